"""A retry storm: clients that ignore the server's pushback, against a server on one core.

    python -m bench.storm                      # v1 from weights/, 20 s per phase, 256 storm clients
    python -m bench.storm --storm-clients 512 --seconds 30 --json bench/storm.json

The server runs pinned to core 0 and the clients in one process pinned to core 1, so the clients'
cost never lands on the server's core. Phases, each over the same 16 JPEGs of 832x480 (tiger video
frames from ../shared, synthetic scenes where it is absent):

1. capacity: 16 well-behaved clients (pushback honoured);
2. overload: 192 clients that honour the pushback hint, 2 s deadlines;
3. storm: N clients with 2 s deadlines that send a refused call again at once;
4. capacity again (the machine's speed drifts; capacity is the mean of 1 and 4).

Prints goodput under overload and under the storm against capacity (the target is >= 0.8x), the status codes, how fast
refusals came back (p50) and the server's RSS before and after. Needs two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.load import LoadReport, run_load
from tests.support.server_process import ServerProcess
from wildscreen.client import Connection

SERVER_CORE, CLIENT_CORE = 0, 1


def storm_images(shared: Path, count: int = 16) -> list[bytes]:
    """832x480 JPEGs of about 90 KB: frames of the tiger video, or synthetic scenes of that size."""
    import cv2
    import numpy as np

    frames = sorted((shared / "data" / "tiger-video" / "images").rglob("*.jpg"))[:count]
    if len(frames) == count:
        return [f.read_bytes() for f in frames]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        image = cv2.GaussianBlur(rng.integers(0, 255, (480, 832, 3), dtype=np.uint8), (7, 7), 0)
        out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def _pin_clients() -> None:
    os.sched_setaffinity(0, {CLIENT_CORE})


def _load(target: str, images: list[bytes], clients: int, seconds: float, deadline_s: float | None, ignore_pushback: bool) -> LoadReport:
    return asyncio.run(run_load(Connection(target=target), images, clients, seconds, deadline_s, ignore_pushback=ignore_pushback))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def run_storm(weights: Path, images: list[bytes], storm_clients: int, seconds: float, server_args: list[str]) -> dict:
    here = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CORE})  # the server process inherits core 0
    try:
        server = ServerProcess(weights, *server_args).start()
    finally:
        os.sched_setaffinity(0, here)
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_pin_clients) as clients:
            def phase(n: int, deadline_s: float | None, ignore: bool, s: float = seconds) -> LoadReport:
                return clients.submit(_load, server.target, images, n, s, deadline_s, ignore).result()

            phase(4, None, False, 3.0)  # warm up the model and the client process
            before = phase(16, 2.0, False)
            rss_before = rss_mb(server.proc.pid)
            overload = phase(192, 2.0, False)
            storm = phase(storm_clients, 2.0, True)
            rss_after = rss_mb(server.proc.pid)
            after = phase(16, 2.0, False)
        healthy = server.health() == 1
    finally:
        server.stop()
    capacity = (before.goodput + after.goodput) / 2
    return {
        "capacity_before": before.summary(), "overload": overload.summary(), "storm": storm.summary(), "capacity_after": after.summary(),
        "capacity_per_s": round(capacity, 2), "goodput_ratio": round(storm.goodput / capacity, 3) if capacity else 0.0,
        "overload_goodput_ratio": round(overload.goodput / capacity, 3) if capacity else 0.0,
        "refusals_per_s": round(storm.codes.get("RESOURCE_EXHAUSTED", 0) / storm.seconds, 1),
        "rss_mb_before": round(rss_before), "rss_mb_after": round(rss_after), "healthy_after": healthy,
        "server_banner": server.banner,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("WILDSCREEN_SHARED", "../shared")))
    parser.add_argument("--storm-clients", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    parser.add_argument("server_args", nargs="*", help="extra flags for the server, after --")
    args = parser.parse_args(argv)
    if not {SERVER_CORE, CLIENT_CORE} <= os.sched_getaffinity(0):
        print(f"needs cores {SERVER_CORE} and {CLIENT_CORE}", file=sys.stderr)
        return 2
    result = run_storm(args.weights, storm_images(args.shared), args.storm_clients, args.seconds, args.server_args)
    print(f"server: {result['server_banner']}")
    for name in ("capacity_before", "overload", "storm", "capacity_after"):
        s = result[name]
        codes = ", ".join(f"{k} {v}" for k, v in sorted(s["codes"].items()))
        print(f"{name:<16} clients {s['clients']:>4}  goodput/s {s['goodput_per_s']:>6.1f}  p50 {s['p50_ms']:>7.1f} ms  "
              f"refusal p50 {s['refusal_p50_ms']:>6.1f} ms  [{codes}]")
    print(f"goodput / capacity: overload (pushback honoured) {result['overload_goodput_ratio']:.2f}, "
          f"storm (pushback ignored) {result['goodput_ratio']:.2f} (target >= 0.80 for both); "
          f"{result['refusals_per_s']:.0f} refusals/s; RSS {result['rss_mb_before']} -> {result['rss_mb_after']} MB; "
          f"healthy after: {result['healthy_after']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
