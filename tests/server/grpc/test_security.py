"""API keys, roles, TLS and mutual TLS against the real server."""

import subprocess
import sys

import grpc
import pytest

from tests.support.server_process import REPO, ServerProcess
from tests.support.certs import make_certs
from tests.support.images import jpeg
from wildscreen.client import Connection
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc


def add_key(keys_file, name, role) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "server", "keys", "add", name, "--role", role, "--file", str(keys_file)],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def keyed_server(untrained_weights, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "api-keys.json"
    keys = {"screen": add_key(keys_file, "platform-a", "screen"), "admin": add_key(keys_file, "ops", "admin")}
    with ServerProcess(untrained_weights, "--api-keys-file", str(keys_file)) as proc:
        yield proc, keys, keys_file


def call(target: str, method: str, api_key: str | None):
    connection = Connection(target=target, api_key=api_key)
    with connection.channel() as channel:
        stub = pb_grpc.ScreeningStub(channel)
        if method == "Screen":
            return stub.Screen(pb.ScreenRequest(image=jpeg()), metadata=connection.metadata(), timeout=30)
        if method == "ReloadModel":
            return stub.ReloadModel(pb.ReloadModelRequest(), metadata=connection.metadata(), timeout=60)
        return stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=connection.metadata(), timeout=30)


def test_keys_file_stores_only_hashes(keyed_server):
    _, keys, keys_file = keyed_server
    text = keys_file.read_text()
    assert keys["screen"] not in text and keys["admin"] not in text and "platform-a" in text
    assert keys["screen"].startswith("ws_") and len(keys["screen"]) > 40


@pytest.mark.parametrize(
    "method,key,code",
    [
        ("Screen", None, grpc.StatusCode.UNAUTHENTICATED),
        ("Screen", "ws_wrong", grpc.StatusCode.UNAUTHENTICATED),
        ("GetModelInfo", None, grpc.StatusCode.UNAUTHENTICATED),
        ("ReloadModel", "screen", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_refused_calls(keyed_server, method, key, code):
    proc, keys, _ = keyed_server
    with pytest.raises(grpc.RpcError) as err:
        call(proc.target, method, keys.get(key, key))
    assert err.value.code() == code


def test_allowed_calls_and_open_health(keyed_server):
    proc, keys, _ = keyed_server
    assert call(proc.target, "Screen", keys["screen"]).model.version == "v0"
    assert call(proc.target, "Screen", keys["admin"]).model.version == "v0"
    assert call(proc.target, "ReloadModel", keys["admin"]).model.version == "v0"
    assert proc.health() == 1  # SERVING, without a key


def test_a_key_added_while_serving_works_without_a_restart(keyed_server):
    import time

    proc, _, keys_file = keyed_server
    new_key = add_key(keys_file, "platform-b", "screen")
    deadline = time.monotonic() + 10  # the file is re-read at most once a second
    while True:
        try:
            assert call(proc.target, "GetModelInfo", new_key).model.version == "v0"
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED and time.monotonic() < deadline, exc
            time.sleep(0.1)


def test_non_loopback_without_tls_refuses_to_start(untrained_weights):
    result = subprocess.run(
        [sys.executable, "-m", "server", "--host", "0.0.0.0", "--port", "0", "--weights-dir", str(untrained_weights)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "refusing to serve plaintext" in result.stderr


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_tls(untrained_weights, certs):
    with ServerProcess(untrained_weights, "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)) as proc:
        ok = Connection(target=f"localhost:{proc.port}", tls_ca=certs.ca)
        with ok.channel() as channel:
            assert pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=30).model.version == "v0"
        with grpc.insecure_channel(f"localhost:{proc.port}") as channel, pytest.raises(grpc.RpcError) as err:
            pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls(untrained_weights, certs):
    args = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), "--tls-client-ca", str(certs.ca))
    with ServerProcess(untrained_weights, *args) as proc:
        target = f"localhost:{proc.port}"
        with_cert = Connection(target=target, tls_ca=certs.ca, client_cert=certs.client_cert, client_key=certs.client_key)
        with with_cert.channel() as channel:
            assert pb_grpc.ScreeningStub(channel).Screen(pb.ScreenRequest(image=jpeg()), timeout=30).model.version == "v0"
        without = Connection(target=target, tls_ca=certs.ca)
        with without.channel() as channel, pytest.raises(grpc.RpcError) as err:
            pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
