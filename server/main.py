"""`wildscreen-serve` (and `python -m server`): serve the model in weights/ over gRPC.

    wildscreen-serve [--port 50051 ...]                      serve (every flag also a WILDSCREEN_* variable)
    wildscreen-serve keys add NAME [--role admin] [--file F]  create an API key, print it once
"""

from __future__ import annotations

import asyncio
import logging
import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from server.grpc.settings import DEFAULT_API_KEYS_FILE, GrpcSettings
from server.logs import configure
from server.offline import stay_offline
from server.workers import serving_line

log = logging.getLogger("server")


async def serve(config: GrpcSettings) -> int:
    """Serve until SIGTERM or SIGINT; 2 when a port is taken or the banks cannot be read (nothing was started)."""
    import torch

    from server.core.errors import ModelError
    from server.grpc.app import WildscreenServer
    from server.grpc.ports import PortInUse

    torch.set_num_threads(config.core.model_threads)
    # The model thread gives up the GIL around every tensor op and must win it back from the event
    # loop; with Python's default 5 ms switch interval a busy loop (a flood of rejected requests)
    # stalls the forward pass for milliseconds per op. 1 ms keeps the model fed.
    sys.setswitchinterval(config.core.switch_interval_s)
    try:
        server = WildscreenServer(config)
    except ModelError as exc:  # e.g. --banks-database-url names a database without banks
        print(f"wildscreen-serve: {exc}", file=sys.stderr)
        return 2
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
    try:
        await server.start()
    except PortInUse as exc:
        print(f"wildscreen-serve: {exc}", file=sys.stderr)
        return 2
    print(serving_line(server.screener.runtime.manifest.version, config.host, server.port), flush=True)
    await stopping.wait()
    log.info("shutting down", extra={"fields": {"grace_period_s": config.grace_period_s}})
    await server.stop()
    return 0


def keys_command(argv: Sequence[str]) -> int:
    """`wildscreen-serve keys add NAME`: the server's key management (the client never needs it)."""
    from server.core.keys import ROLES, KeyStore

    parser = argparse.ArgumentParser(prog="wildscreen-serve keys", description="Manage the server's API keys.")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="create a key; it is printed once and only its hash is stored")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="screen")
    add.add_argument("--file", type=Path, default=None,
                     help=f"keys file; default: --api-keys-file of the server's settings (WILDSCREEN_API_KEYS_FILE), "
                          f"else {DEFAULT_API_KEYS_FILE}")
    args = parser.parse_args(argv)
    keys_file = args.file or GrpcSettings.from_args([]).api_keys_file or DEFAULT_API_KEYS_FILE
    try:
        key = KeyStore(keys_file).add(args.name, args.role)
    except ValueError as exc:
        print(f"wildscreen-serve: {exc}", file=sys.stderr)
        return 2
    print(f"API key for {args.name} (role {args.role}) in {keys_file}; it is shown only now, store it safely:", file=sys.stderr)
    print(key)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    stay_offline()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["keys"]:
        return keys_command(argv[1:])
    config = GrpcSettings.from_args(argv)
    configure(config.log)
    refusal = config.refusal()
    if refusal:
        print(f"wildscreen-serve: {refusal}", file=sys.stderr)
        return 2
    if config.workers > 1:
        from server.workers import supervise

        return supervise(config)
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
