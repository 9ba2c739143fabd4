"""`wildscreen-serve` (and `python -m server`): serve the model in weights/ over gRPC."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence

from server.config import ServerConfig
from server.logs import configure

log = logging.getLogger("server")

SERVING_LINE = re.compile(r"wildscreen serving (?P<version>\S+) on (?P<host>\S+):(?P<port>\d+)")
"""What a server prints on stdout once it answers: the --workers supervisor, the tests and the
benchmarks wait for it (and learn the port of --port 0 from it)."""


def serving_line(version: str, host: str, port: int) -> str:
    return f"wildscreen serving {version} on {host}:{port}"


async def serve(config: ServerConfig) -> None:
    import torch

    from server.grpc.app import WildscreenServer

    torch.set_num_threads(config.torch_threads or os.cpu_count() or 1)
    # The model thread gives up the GIL around every tensor op and must win it back from the event
    # loop; with Python's default 5 ms switch interval a busy loop (a flood of rejected requests)
    # stalls the forward pass for milliseconds per op. 1 ms keeps the model fed.
    sys.setswitchinterval(float(os.environ.get("WILDSCREEN_SWITCH_INTERVAL_S", "0.001")))
    server = WildscreenServer(config)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)

    reloads: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    def reload() -> None:
        async def run() -> None:
            log.info("SIGHUP: loading the current model")
            try:
                await server.screener.load(None)
            except Exception:
                log.exception("reload on SIGHUP failed; the old model keeps serving")

        task = loop.create_task(run())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    await server.start()
    print(serving_line(server.screener.runtime.manifest.version, config.host, server.port), flush=True)
    await stopping.wait()
    log.info("shutting down", extra={"fields": {"grace_period_s": config.grace_period_s}})
    await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    config = ServerConfig.from_args(argv)
    configure(config.log_format, config.log_level)
    refusal = config.refusal()
    if refusal:
        print(f"wildscreen-serve: {refusal}", file=sys.stderr)
        return 2
    if config.workers > 1:
        from server.workers import supervise

        return supervise(config)
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
