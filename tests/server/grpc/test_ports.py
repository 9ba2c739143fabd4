"""A port already serving is never shared by accident: a second server refuses to start (exit 2,
"in use") before it loads anything, and the running one keeps every call."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from tests.support.images import jpeg
from tests.support.ports import free_port
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc


def second_server(weights, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server", "--weights-dir", str(weights), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_server_on_a_taken_port_is_refused(untrained_server, untrained_weights, workers):
    refused = second_server(untrained_weights, "--port", str(untrained_server.port), "--workers", workers)
    assert refused.returncode == 2, refused.stderr
    assert f"127.0.0.1:{untrained_server.port}" in refused.stderr and "in use" in refused.stderr
    assert "serving" not in refused.stdout
    # Every call still reaches the server that was there first (a sharer would be loading: UNAVAILABLE).
    with grpc.insecure_channel(untrained_server.target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        stub = pb_grpc.ScreeningStub(channel)
        for seed in range(4):
            assert stub.Screen(pb.ScreenRequest(image=jpeg(64, 48, seed=seed)), timeout=30).model.version == "v0"


def test_a_taken_health_or_metrics_port_is_refused_before_anything_starts(untrained_server, untrained_weights):
    for flag in ("--health-port", "--metrics-port"):
        refused = second_server(untrained_weights, "--port", str(free_port()), flag, str(untrained_server.port))
        assert refused.returncode == 2, refused.stderr
        assert "in use" in refused.stderr, refused.stderr
