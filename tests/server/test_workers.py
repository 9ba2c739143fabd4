"""--workers: several server processes on one port, started, supervised and stopped together."""

import re
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
import psutil
import pytest

from server import settings
from server.grpc.settings import GrpcSettings
from tests.support.server_process import ServerProcess
from tests.support.images import jpeg
from tests.support.metrics import screened_count
from tests.support.ports import free_port
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def screen_on_fresh_channels(target: str, n: int) -> list[str]:
    """One channel, and one connection, per request: the kernel spreads connections over workers.
    (Without a local subchannel pool, gRPC lets a new channel reuse the connection of the one just
    closed when it has not gone yet: seen on one core, all 16 requests on one worker.)"""
    codes = []
    for i in range(n):
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            try:
                pb_grpc.ScreeningStub(channel).Screen(pb.ScreenRequest(image=jpeg(96, 64, seed=i)), timeout=30)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
    return codes


def test_workers_share_the_port_and_the_supervisor_replaces_one_that_dies(untrained_weights):
    metrics, health_port = free_port(), free_port()
    args = ("--workers", "2", "--max-batch-size", "2", "--metrics-port", str(metrics), "--health-port", str(health_port))
    with ServerProcess(untrained_weights, *args) as proc:
        pids = [int(p) for p in re.search(r"pids ([\d ]+)\)", proc.banner).group(1).split()]
        assert len(pids) == 2 and "with 2 workers" in proc.banner
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:  # both workers share the probes' port too
            check = health_pb2_grpc.HealthStub(channel).Check
            assert check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        for workers in ("1", "2"):  # only the supervisor's own workers share its ports
            for port_flag in ("--port", "--health-port"):
                refused = subprocess.run(
                    [sys.executable, "-m", "server", "--weights-dir", str(untrained_weights), "--workers", workers,
                     "--port", str(free_port()), port_flag, str(proc.port if port_flag == "--port" else health_port)],
                    capture_output=True, text=True, timeout=120)
                assert refused.returncode == 2 and "in use" in refused.stderr, (workers, port_flag, refused.stderr)
        assert screen_on_fresh_channels(proc.target, 16) == ["OK"] * 16
        per_worker = [screened_count(metrics), screened_count(metrics + 1)]
        assert sum(per_worker) == 16 and min(per_worker) > 0, per_worker

        with grpc.insecure_channel(proc.target) as channel, pytest.raises(grpc.RpcError) as refused:
            pb_grpc.ScreeningStub(channel).ReloadModel(pb.ReloadModelRequest(), timeout=30)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "SIGHUP" in refused.value.details()

        psutil.Process(pids[0]).kill()
        supervisor = psutil.Process(proc.proc.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            children = [c for c in supervisor.children() if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
            if len(children) == 2 and pids[0] not in [c.pid for c in children]:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the dead worker was not started again")
        # Until the new worker is up, connections land on the one that stayed: nothing is lost.
        assert screen_on_fresh_channels(proc.target, 8) == ["OK"] * 8

        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(60) == 0
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_a_configuration_survives_the_trip_through_flags():
    config = settings.build(GrpcSettings, port=0, max_batch_size=16, insecure=True, metrics_port=9100, workers=3,
                            tls_cert=None, log_format="text")
    assert GrpcSettings.from_args(config.to_args(), environ={}) == config
    assert GrpcSettings.from_args(GrpcSettings().to_args(), environ={"WILDSCREEN_INSECURE": "1"}) == GrpcSettings()
