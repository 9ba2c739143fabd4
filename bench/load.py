"""Load and soak: N concurrent clients for T seconds against a server, over a folder of images.

    python -m bench.load --target 127.0.0.1:50051 --images listings/ --clients 64 --seconds 120 --deadline-s 2
    python -m bench.load ... --clients 256 --deadline-s 2 --ignore-pushback   # a retry storm

Clients honour the server's `grpc-retry-pushback-ms` hint (else back off exponentially), as gRPC's
retry policy does; `--ignore-pushback` makes them retry a refused call at once, as badly written
clients in a real fleet do. Prints throughput, goodput (OK answers per second), p50/p95/p99 latency
of OK answers, the p50 of refusals and the count of each status code. Bounded in clients and time, and loopback only: it is a test tool, not
a way to load someone else's server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import grpc
import numpy as np

from wildscreen.client import Connection
from wildscreen.inputs import image_files
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

MAX_CLIENTS = 1024
MAX_SECONDS = 3600
LOOPBACK = ("127.0.0.1:", "localhost:", "[::1]:")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, NaN when there is nothing to measure (every call refused)."""
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class LoadReport:
    clients: int
    seconds: float
    deadline_s: float | None
    codes: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    """The server's own total per answer (timing.total_ms): latency without the client and the wire."""
    server_stages_ms: dict[str, list[float]] = field(default_factory=lambda: {"decode": [], "queue": [], "inference": []})
    """The server's own split of each answer: where its total went."""
    batch_sizes: list[int] = field(default_factory=list)
    refusal_ms: list[float] = field(default_factory=list)
    """How long each RESOURCE_EXHAUSTED took to come back: what a refusal costs the caller."""

    @property
    def total(self) -> int:
        return sum(self.codes.values())

    @property
    def goodput(self) -> float:
        return self.codes.get("OK", 0) / self.seconds

    @property
    def throughput(self) -> float:
        return self.total / self.seconds

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def summary(self) -> dict:
        return {
            "clients": self.clients, "seconds": round(self.seconds, 2), "deadline_s": self.deadline_s,
            "answers_per_s": round(self.throughput, 2), "goodput_per_s": round(self.goodput, 2),
            "p50_ms": round(self.percentile(50), 1), "p95_ms": round(self.percentile(95), 1), "p99_ms": round(self.percentile(99), 1),
            "server_p50_ms": round(percentile(self.server_ms, 50), 1),
            **{f"server_{stage}_p50_ms": round(percentile(v, 50), 1) for stage, v in self.server_stages_ms.items()},
            "mean_batch": round(float(np.mean(self.batch_sizes)), 2) if self.batch_sizes else 0.0,
            "refusal_p50_ms": round(percentile(self.refusal_ms, 50), 1),
            "codes": dict(self.codes),
        }

    @classmethod
    def merged(cls, reports: list[LoadReport]) -> LoadReport:
        """One report of client processes that ran side by side over the same window."""
        out = cls(sum(r.clients for r in reports), max(r.seconds for r in reports), reports[0].deadline_s)
        for r in reports:
            out.codes.update(r.codes)
            out.latencies_ms += r.latencies_ms
            out.server_ms += r.server_ms
            for stage, values in r.server_stages_ms.items():
                out.server_stages_ms[stage] += values
            out.batch_sizes += r.batch_sizes
            out.refusal_ms += r.refusal_ms
        return out

    def table(self) -> str:
        s = self.summary()
        codes = ", ".join(f"{k} {v}" for k, v in sorted(s["codes"].items()))
        return (f"clients {s['clients']:>4}  {s['seconds']:>6.1f} s  answers/s {s['answers_per_s']:>7.2f}  goodput/s {s['goodput_per_s']:>7.2f}  "
                f"p50 {s['p50_ms']:>7.1f} ms  p95 {s['p95_ms']:>7.1f} ms  p99 {s['p99_ms']:>7.1f} ms  mean batch {s['mean_batch']:>5.2f}  "
                f"refusal p50 {s['refusal_p50_ms']:>6.1f} ms  [{codes}]")


def pushback_s(exc: grpc.aio.AioRpcError) -> float:
    """The server's `grpc-retry-pushback-ms` trailer, in seconds (0 when absent), with jitter."""
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-retry-pushback-ms":
            return int(value) / 1000.0 * random.uniform(0.8, 1.2)
    return 0.0


async def run_load(
    connection: Connection, images: list[bytes], clients: int, seconds: float, deadline_s: float | None = None,
    rpc_timeout_s: float = 60.0, ignore_pushback: bool = False,
) -> LoadReport:
    """`clients` closed-loop clients on one channel each, for `seconds`; with `ignore_pushback` a
    refused call is sent again at once."""
    if not connection.target.startswith(LOOPBACK):
        raise ValueError(f"load is for loopback targets only, not {connection.target}")
    if not 1 <= clients <= MAX_CLIENTS or not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"clients must be 1..{MAX_CLIENTS} and seconds 0..{MAX_SECONDS}")
    report = LoadReport(clients, seconds, deadline_s)
    stop_at = time.monotonic() + seconds
    metadata = connection.metadata()

    async def client(index: int) -> None:
        async with connection.aio_channel() as channel:
            stub = pb_grpc.ScreeningStub(channel)
            i = index
            backoff_s = 0.0
            while time.monotonic() < stop_at:
                request = pb.ScreenRequest(request_id=f"c{index}-{i}", image=images[i % len(images)])
                start = time.monotonic()
                try:
                    response = await stub.Screen(request, timeout=deadline_s or rpc_timeout_s, metadata=metadata)
                    report.codes["OK"] += 1
                    report.latencies_ms.append((time.monotonic() - start) * 1000.0)
                    report.batch_sizes.append(response.timing.batch_size)
                    report.server_ms.append(response.timing.total_ms)
                    for stage in report.server_stages_ms:
                        report.server_stages_ms[stage].append(getattr(response.timing, f"{stage}_ms"))
                    backoff_s = 0.0
                except grpc.aio.AioRpcError as exc:
                    report.codes[exc.code().name] += 1
                    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        report.refusal_ms.append((time.monotonic() - start) * 1000.0)
                    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not ignore_pushback:
                        # As gRPC's retry design (A6) says: the server's pushback if it gives one,
                        # else exponential backoff with jitter, 100 ms to 5 s.
                        backoff_s = min(5.0, max(0.1, backoff_s * 2))
                        wait = max(pushback_s(exc), backoff_s * random.uniform(0.5, 1.0))
                        await asyncio.sleep(min(wait, max(0.0, stop_at - time.monotonic())))  # never past the end
                i += clients

    start = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    report.seconds = time.monotonic() - start
    return report


def _load_from_process(connection: Connection, images: list[bytes], clients: int, seconds: float,
                       deadline_s: float | None, start_at: float, ignore_pushback: bool) -> LoadReport:
    time.sleep(max(0.0, start_at - time.time()))  # all processes start their window together
    return asyncio.run(run_load(connection, images, clients, seconds, deadline_s, ignore_pushback=ignore_pushback))


class ClientProcesses:
    """`run_load` with the clients spread over several processes, kept for successive loads: one
    Python process tops out at a few thousand calls a second, fewer than a GPU server answers. On
    a small machine keep one: client processes take cores from the server."""

    def __init__(self, processes: int = 1) -> None:
        self.processes = processes
        self._pool = ProcessPoolExecutor(processes, mp_context=get_context("spawn")) if processes > 1 else None
        self._started = False

    def run(self, connection: Connection, images: list[bytes], clients: int, seconds: float, deadline_s: float | None = None,
            ignore_pushback: bool = False) -> LoadReport:
        if self._pool is None or clients < 2:
            return asyncio.run(run_load(connection, images, clients, seconds, deadline_s, ignore_pushback=ignore_pushback))
        n = min(self.processes, clients)
        shares = [clients // n + (i < clients % n) for i in range(n)]
        start_at = time.time() + (1.0 if self._started else 8.0)  # the first time, interpreters start and import grpc
        self._started = True
        futures = [self._pool.submit(_load_from_process, connection, images, k, seconds, deadline_s, start_at, ignore_pushback) for k in shares]
        return LoadReport.merged([f.result() for f in futures])

    def __enter__(self) -> ClientProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--images", type=Path, nargs="+", required=True, help="image files or folders")
    parser.add_argument("--clients", type=int, nargs="+", default=[16])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--deadline-s", type=float, default=None, help="per-request deadline (default: none)")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--ignore-pushback", action="store_true", help="retry a refused call at once (a retry storm)")
    parser.add_argument("--processes", type=int, default=1, help="client processes (more only where the clients are the limit)")
    parser.add_argument("--json", type=Path, help="also write the reports as JSON")
    args = parser.parse_args(argv)
    images = [p.read_bytes() for p in image_files(args.images)]
    if not images:
        print("no images found", file=sys.stderr)
        return 2
    connection = Connection(target=args.target, api_key=args.api_key)
    reports = []
    with ClientProcesses(args.processes) as load:
        for clients in args.clients:
            report = load.run(connection, images, clients, args.seconds, args.deadline_s, args.ignore_pushback)
            print(report.table(), flush=True)
            reports.append(report.summary())
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
