"""The servicer in process: proto in, core call, proto out; and what leaves when something breaks."""

import asyncio
import logging

import grpc
import pytest

from server.grpc.status import INTERNAL_MESSAGE
from tests.support.images import jpeg
from tests.support.servers import in_process_server, small_config
from wildscreen.v1 import screening_pb2 as pb


def test_screen_and_model_info(untrained_weights):
    async def calls():
        async with in_process_server(small_config(untrained_weights)) as (server, stub):
            info = await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
            response = await stub.Screen(pb.ScreenRequest(request_id="a", image=jpeg(), overlay=pb.OVERLAY_FORMAT_PNG), timeout=60)
            return server, info, response

    server, info, response = asyncio.run(calls())
    assert info.model.version == "v0" and [c.label for c in info.classes] == ["ivory", "pangolin_scales", "tiger_parts", "live_reptile"]
    assert info.backend == "torch" and info.max_batch_size == 2
    assert response.request_id == "a" and response.model.version == "v0" and response.verdict != pb.VERDICT_UNSPECIFIED
    assert (response.image_width, response.image_height) == (320, 240) and response.overlay.startswith(b"\x89PNG")
    assert len(response.thresholds) == 4


def test_reload_is_refused_by_a_supervised_worker(untrained_weights):
    async def reload():
        async with in_process_server(small_config(untrained_weights, worker_index=0)) as (_, stub):
            await stub.ReloadModel(pb.ReloadModelRequest(), timeout=30)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(reload())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "SIGHUP" in err.value.details()


def test_an_unexpected_error_leaves_as_internal_without_internals(untrained_weights, caplog):
    """A bug anywhere behind an RPC: INTERNAL with the generic message, the traceback and the
    request id in the log; images of a stream get it inline; the server goes on serving."""

    async def broken(job, deadline=None):
        raise RuntimeError("/opt/secret/internals")

    async def calls():
        async with in_process_server(small_config(untrained_weights)) as (server, stub):
            good = server.screener.screen
            server.screener.screen = broken
            try:
                with pytest.raises(grpc.aio.AioRpcError) as unary:
                    await stub.Screen(pb.ScreenRequest(request_id="r-42", image=jpeg()), timeout=30)
                stream = [r async for r in stub.ScreenStream(iter([pb.ScreenRequest(request_id="s-1", image=jpeg())]), timeout=30)]
            finally:
                server.screener.screen = good
            after = await stub.Screen(pb.ScreenRequest(image=jpeg()), timeout=60)
            internal = server.metrics.registry.get_sample_value("wildscreen_requests_total", {"rpc": "Screen", "code": "INTERNAL"})
            return unary.value, stream, after, internal

    with caplog.at_level(logging.ERROR, logger="server.grpc.status"):
        unary, stream, after, internal = asyncio.run(calls())
    assert unary.code() == grpc.StatusCode.INTERNAL and unary.details() == INTERNAL_MESSAGE
    assert stream[0].error.code == grpc.StatusCode.INTERNAL.value[0] and stream[0].error.message == INTERNAL_MESSAGE
    logged = [r.fields["request_id"] for r in caplog.records if r.getMessage() == "request failed"]
    assert logged == ["r-42", "s-1"]
    assert after.model.version == "v0"
    assert internal == 1  # counted as what the caller got, not as UNKNOWN
