"""The real server in the test's own process and event loop (no subprocess): for tests that look
inside it, at its metrics, its logs, or a fault put in on purpose."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from server import settings
from server.grpc.app import WildscreenServer
from server.grpc.settings import GrpcSettings
from wildscreen.v1 import screening_pb2_grpc as pb_grpc


@contextlib.asynccontextmanager
async def in_process_server(config: GrpcSettings) -> AsyncIterator[tuple[WildscreenServer, pb_grpc.ScreeningStub]]:
    """A started WildscreenServer on a free loopback port, and a stub connected to it."""
    server = WildscreenServer(config)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield server, pb_grpc.ScreeningStub(channel)
    finally:
        await server.stop(0)


def small_config(weights, **changes) -> GrpcSettings:
    """Settings for an in-process server on the untrained model: a free port, few threads. Changes
    are flat names of any layer (`worker_index=0`, `max_batch_size=4`); `.core` is the Screener's part."""
    defaults = dict(port=0, weights_dir=weights, device="cpu", backend="torch", max_batch_size=2, max_queue_size=4,
                    torch_threads=1, decode_workers=1, log_format="text")
    return settings.build(GrpcSettings, **(defaults | changes))
