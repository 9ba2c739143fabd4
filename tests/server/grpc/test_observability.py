"""Metrics and the access log, read inside an in-process server."""

import asyncio
import logging

import grpc
import pytest

from tests.support.images import jpeg
from tests.support.servers import in_process_server, small_config
from wildscreen.v1 import screening_pb2 as pb


def sample(server, name: str, **labels) -> float:
    value = server.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_rpcs_and_images_are_counted_by_final_code_and_logged(untrained_weights, caplog):
    async def calls():
        async with in_process_server(small_config(untrained_weights)) as (server, stub):
            await stub.Screen(pb.ScreenRequest(request_id="ok-1", image=jpeg()), timeout=60)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Screen(pb.ScreenRequest(request_id="bad-1", image=b"not an image"), timeout=30)
            await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
            return server

    with caplog.at_level(logging.INFO, logger="wildscreen.access"):
        server = asyncio.run(calls())
    assert sample(server, "wildscreen_requests_total", rpc="Screen", code="OK") == 1
    assert sample(server, "wildscreen_requests_total", rpc="Screen", code="INVALID_ARGUMENT") == 1
    assert sample(server, "wildscreen_requests_total", rpc="GetModelInfo", code="OK") == 1
    assert sample(server, "wildscreen_images_total", code="OK") == 1
    assert sample(server, "wildscreen_images_total", code="INVALID_ARGUMENT") == 1
    assert sample(server, "wildscreen_batch_size_count") >= 1
    assert sample(server, "wildscreen_latency_seconds_count", stage="total") == 1
    lines = [r.fields for r in caplog.records if r.name == "wildscreen.access"]
    assert [(f["rpc"], f["status"], f.get("request_id")) for f in lines] == [
        ("Screen", "OK", "ok-1"), ("Screen", "INVALID_ARGUMENT", "bad-1"), ("GetModelInfo", "OK", None)]
