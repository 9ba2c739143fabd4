"""--max-connection-age-s: the server closes old connections (GOAWAY) so that clients re-resolve
and reconnect, which is how a client behind a headless Service finds pods added since it connected."""

from __future__ import annotations

import json
import time

import pytest

from server.grpc.app import server_options
from server.grpc.settings import GrpcSettings
from tests.support.server_process import ServerProcess
from wildscreen.client import Connection
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def peers_seen(weights, *args: str) -> set[str]:
    """The client addresses (so the connections) that served a few calls spread over 2 s of one channel."""
    with ServerProcess(weights, "--log-format", "json", "--backend", "torch", "--torch-threads", "1", *args) as proc:
        with Connection(target=proc.target, retries=True).channel() as channel:
            stub = pb_grpc.ScreeningStub(channel)
            for _ in range(8):
                stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
                time.sleep(0.25)
        proc.stop()
        lines = [json.loads(line) for line in proc.logs().splitlines() if line.startswith("{")]
    return {line["peer"] for line in lines if line.get("rpc") == "GetModelInfo"}


def test_old_connections_are_closed_and_the_client_reconnects_without_a_failed_call(untrained_weights):
    assert len(peers_seen(untrained_weights)) == 1  # default: one connection for the channel's life
    assert len(peers_seen(untrained_weights, "--max-connection-age-s", "0.5", "--grace-period-s", "1")) >= 2


def test_connection_age_becomes_grpc_options_with_the_shutdown_grace():
    assert "grpc.max_connection_age_ms" not in dict(server_options(GrpcSettings()))
    options = dict(server_options(GrpcSettings(max_connection_age_s=300, grace_period_s=25)))
    assert options["grpc.max_connection_age_ms"] == 300_000 and options["grpc.max_connection_age_grace_ms"] == 25_000
    with pytest.raises(ValueError, match="max_connection_age_s"):
        GrpcSettings(max_connection_age_s=-1)
