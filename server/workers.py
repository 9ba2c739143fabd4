"""`--workers N`: N server processes on one port, for when one Python process is the limit.

One grpc.aio process keeps about one core busy with gRPC, protobuf and request handling. On a GPU
that core, not the GPU, caps the throughput (bench/gpu.sh on an H100: about 500 images/s with the
server at 110% CPU and the GPU 10% busy). gRPC listens with SO_REUSEPORT, so several processes can
listen on one port and the kernel spreads the connections over them.

The supervisor starts the workers with its own configuration, prints the serving line once all
are up, passes SIGTERM/SIGINT (drain and stop) and SIGHUP (reload the current model) on to every
worker, and starts a worker again when one dies. Each worker loads its own copy of the model (on a
GPU, its own CUDA context) and serves its own metrics port (--metrics-port + its index). The
ReloadModel RPC reaches one worker only, so supervised workers refuse it: make the version current
with `training promote` and send SIGHUP to the supervisor.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import threading
import time

from server import settings
from server.config import usable_cores
from server.grpc.ports import PortInUse, reserve_port
from server.grpc.settings import GrpcSettings

log = logging.getLogger("server.workers")
RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 30.0
SERVING_LINE = re.compile(r"wildscreen serving (?P<version>\S+) on (?P<host>\S+):(?P<port>\d+)")
"""What a server prints on stdout once it answers (`serving_line`): the supervisor waits for it from
each worker, and so do the tests and benchmarks that start a server (learning the port of --port 0)."""


def serving_line(version: str, host: str, port: int) -> str:
    return f"wildscreen serving {version} on {host}:{port}"


def worker_config(config: GrpcSettings, port: int, index: int) -> GrpcSettings:
    """A worker's share: the fixed port, its own metrics port, its share of the CPU cores."""
    share = max(1, usable_cores() // config.workers)
    return settings.replace(
        config, port=port, workers=1, worker_index=index,
        metrics_port=config.metrics_port + index if config.metrics_port else 0,
        torch_threads=config.core.torch_threads or share, decode_workers=config.core.decode_workers or share,
    )


class Worker:
    def __init__(self, config: GrpcSettings, restart_delay_s: float = RESTART_DELAY_S) -> None:
        self.config = config
        self.started = time.monotonic()
        self.restart_delay_s = restart_delay_s
        """How long to wait before starting it again if it dies within a minute."""
        self.version: str | None = None
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", *config.to_args()], stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        threading.Thread(target=self._read_stdout, daemon=True, name=f"worker-{config.worker_index}-stdout").start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            m = SERVING_LINE.search(line)
            if m and not self.ready.is_set():
                self.version = m["version"]
                self.ready.set()
            else:
                sys.stdout.write(line)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)


def supervise(config: GrpcSettings, startup_timeout_s: float = 600.0) -> int:
    """Run `config.workers` workers until SIGTERM or SIGINT; the exit code of a clean stop is 0."""
    shared_ports = [config.port] + ([config.health_port] if config.health_port else [])
    try:  # the workers share the health port too: a second supervisor must join neither
        holders = [reserve_port(config.host, p) for p in shared_ports]
    except PortInUse as exc:
        print(f"wildscreen-serve: {exc}", file=sys.stderr)
        return 2
    port = holders[0].getsockname()[1]
    workers = [Worker(worker_config(config, port, i)) for i in range(config.workers)]
    stopping = threading.Event()

    def forward(sig: int, _frame: object) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping.set()
        for w in workers:
            w.signal(signal.SIGTERM if sig == signal.SIGINT else sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    deadline = time.monotonic() + startup_timeout_s
    while not all(w.ready.is_set() for w in workers):
        dead = [w for w in workers if w.proc.poll() is not None]
        if dead or stopping.is_set() or time.monotonic() > deadline:
            why = f"worker {dead[0].config.worker_index} exited with {dead[0].proc.returncode}" if dead else "stopped or timed out"
            print(f"wildscreen-serve: workers did not start: {why}", file=sys.stderr)
            return _stop(workers, config.grace_period_s) or 1
        time.sleep(0.05)
    for holder in holders:
        holder.close()
    print(f"{serving_line(workers[0].version, config.host, port)} with {len(workers)} workers "
          f"(pids {' '.join(str(w.proc.pid) for w in workers)})", flush=True)

    while not stopping.is_set():
        for i, w in enumerate(workers):
            if w.proc.poll() is not None and not stopping.is_set():
                # A worker that keeps dying (a broken model, no GPU memory) is retried ever more slowly.
                delay = w.restart_delay_s if time.monotonic() - w.started < 60.0 else RESTART_DELAY_S
                log.error("worker died; starting it again", extra={"fields": {
                    "worker": i, "pid": w.proc.pid, "exit": w.proc.returncode, "in_s": delay}})
                stopping.wait(delay)
                if not stopping.is_set():
                    workers[i] = Worker(w.config, restart_delay_s=min(MAX_RESTART_DELAY_S, 2 * delay))
        stopping.wait(0.2)
    return _stop(workers, config.grace_period_s)


def _stop(workers: list[Worker], grace_period_s: float) -> int:
    for w in workers:
        w.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_period_s + 10.0
    codes = []
    for w in workers:
        try:
            codes.append(w.proc.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            codes.append(w.proc.wait())
    # A worker stopped before it was serving had nothing in flight: SIGTERM's default end is clean.
    clean = [c == 0 or (c == -signal.SIGTERM and not w.ready.is_set()) for w, c in zip(workers, codes)]
    if not all(clean):
        log.error("workers ended badly", extra={"fields": {"exit_codes": codes}})
    return 0 if all(clean) else 1
