"""--health-port: grpc.health.v1 in plaintext beside a TLS server, for Kubernetes' grpc probes
(which speak no TLS), and nothing else on it."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.grpc.settings import GrpcSettings
from tests.support.server_process import ServerProcess
from tests.support.certs import make_certs
from tests.support.ports import free_port
from wildscreen.client import Connection
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def test_plaintext_health_port_beside_tls_reports_the_same_status_and_serves_nothing_else(untrained_weights, tmp_path):
    certs = make_certs(tmp_path)
    health_port = free_port()
    args = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), "--health-port", str(health_port))
    with ServerProcess(untrained_weights, *args) as proc:
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as plain:
            check = health_pb2_grpc.HealthStub(plain).Check
            for service in ("", "wildscreen.v1.Screening"):
                status = check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
                assert status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.ScreeningStub(plain).GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with Connection(target=f"localhost:{proc.port}", tls_ca=certs.ca).channel() as tls:
            assert pb_grpc.ScreeningStub(tls).GetModelInfo(pb.GetModelInfoRequest(), timeout=10).model.version == "v0"


def test_health_port_must_differ_from_the_service_port():
    with pytest.raises(ValueError, match="health_port"):
        GrpcSettings(port=50051, health_port=50051)
