"""The server as a child process: `ServerProcess` runs the real server on a free loopback port the
way `make serve` runs it, and waits for the serving line that server/workers.py defines (the
--workers supervisor waits for the same line). The integration tests use it, and so does the
benchmark (bench/ imports it from here, as docs/screenshots.py imports tests.support.review: a
harness, not the product, and one copy of it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.workers import SERVING_LINE

REPO = Path(__file__).resolve().parents[2]


class ServerProcess:
    def __init__(self, weights_dir: Path, *args: str, env: dict[str, str] | None = None, startup_timeout_s: float = 120) -> None:
        self.weights_dir = weights_dir
        self.args = list(args)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.banner = ""
        """The server's "wildscreen serving ..." line."""
        self.log_path = Path(tempfile.mkstemp(prefix="wildscreen-server-", suffix=".log")[1])

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--port", "0", "--weights-dir", str(self.weights_dir), *self.args],
            cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
                continue
            m = SERVING_LINE.search(line)
            if m:
                self.port = int(m["port"])
                self.banner = line.strip()
                return self
        self.stop()
        raise TimeoutError(f"server did not start in {self.startup_timeout_s}s:\n{self.logs()}")

    def health(self, service: str = "") -> int:
        with grpc.insecure_channel(self.target) as channel:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def logs(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
