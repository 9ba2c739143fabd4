"""Client-side load balancing over real replicas: three server processes on loopback ports stand
in for the pods behind a headless Kubernetes Service (whose DNS name resolves to every pod's
address); the client gets all three addresses in one target and the round_robin policy."""

from __future__ import annotations

import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from tests.support.server_process import ServerProcess
from tests.support.images import jpeg
from tests.support.metrics import screened_count
from tests.support.ports import free_port
from wildscreen.cli import main as cli
from wildscreen.client import RETRY_SERVICE_CONFIG, Connection, service_config
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

CALLS = 30
SMALL = "--device", "cpu", "--backend", "torch", "--torch-threads", "1", "--decode-workers", "1", "--max-batch-size", "2"


def test_one_service_config_carries_both_the_retry_and_the_balancing_policy():
    both = service_config(retries=True, load_balancing="round_robin")
    assert both["methodConfig"] == RETRY_SERVICE_CONFIG["methodConfig"]
    assert both["loadBalancingConfig"] == [{"round_robin": {}}]
    assert service_config(retries=False, load_balancing="round_robin") == {"loadBalancingConfig": [{"round_robin": {}}]}
    assert service_config(retries=True) == RETRY_SERVICE_CONFIG
    assert service_config(retries=False) is None  # today's channels: gRPC's defaults (pick_first)
    options = dict(Connection(retries=True, load_balancing="round_robin")._options())
    assert json.loads(options["grpc.service_config"]) == both and options["grpc.enable_retries"] == 1
    with pytest.raises(ValueError, match="least_request"):
        Connection(load_balancing="least_request")


@pytest.fixture
def replicas(untrained_weights):
    ports = [free_port() for _ in range(3)]
    procs = [ServerProcess(untrained_weights, *SMALL, "--metrics-port", str(p)) for p in ports]
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(ServerProcess.start, procs))
        yield list(zip(procs, ports))
    finally:
        for proc in procs:
            proc.stop()


def test_round_robin_spreads_calls_over_replicas_and_survives_one_killed_mid_run(replicas, capsys):
    target = "ipv4:" + ",".join(proc.target for proc, _ in replicas)
    connection = Connection(target=target, retries=True, load_balancing="round_robin")
    image = jpeg(96, 64, seed=1)
    with connection.channel() as channel:
        stub = pb_grpc.ScreeningStub(channel)
        grpc.channel_ready_future(channel).result(timeout=30)
        for _ in range(6):  # until every subchannel is READY; GetModelInfo screens nothing
            stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        for _ in range(CALLS):
            stub.Screen(pb.ScreenRequest(image=image), timeout=30)
        shares = [screened_count(metrics) for _, metrics in replicas]
        assert sum(shares) == CALLS
        assert min(shares) >= CALLS / 3 / 2, shares  # a fair share each; pick_first would give one replica all

        # Mid-run, with calls in flight on three client threads, one replica dies without a goodbye.
        answered, lock, killed = [], threading.Lock(), threading.Event()
        victim, _ = replicas[0]

        def client(seed: int) -> None:
            for i in range(CALLS // 3):
                try:
                    stub.Screen(pb.ScreenRequest(image=jpeg(96, 64, seed=seed * 100 + i)), timeout=30)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with lock:
                    answered.append(code)
                    if len(answered) == CALLS // 3 and not killed.is_set():
                        victim.proc.send_signal(signal.SIGKILL)
                        killed.set()

        with ThreadPoolExecutor(3) as pool:
            list(pool.map(client, range(3)))
        assert killed.is_set() and victim.proc.wait(10) == -signal.SIGKILL
        assert answered == ["OK"] * CALLS  # retried on UNAVAILABLE, re-picked among the ready two
        survivors = [screened_count(metrics) - before for (_, metrics), before in zip(replicas[1:], shares[1:])]
        assert all(s > 0 for s in survivors) and sum(survivors) >= CALLS // 2, survivors  # the victim got ~a third before

    # The CLI takes the same targets: a dns:/// name (localhost; 127.0.0.1 answers) with round_robin.
    capsys.readouterr()
    assert cli(["info", "--server", f"dns:///localhost:{replicas[1][0].port}", "--lb", "round_robin", "--timeout", "30"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["version"] == "v0"
