"""Hot reload, graceful shutdown, overload, metrics and logs, against the real server process."""

import asyncio
import io
import json
import re
import signal
import threading
import time
import urllib.request

import cv2
import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.load import run_load
from server.core.manifest import WeightsStore
from tests.support.server_process import ServerProcess
from tests.support.images import jpeg
from tests.support.ports import free_port
from training.modelfile import build_untrained
from training.steps.promote import promote
from wildscreen.client import Connection
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc


@pytest.fixture()
def two_versions(tmp_path):
    """weights/ with v0 current and v1 (another untrained model) beside it."""
    weights = tmp_path / "weights"
    for version, seed in (("v0", 0), ("v1", 1)):
        model = build_untrained(tmp_path / f"{version}-src.pt", input_size=256, seed=seed)
        promote(model, weights, version=version, trained=False, make_current=version == "v0")
    return weights


class Hammer:
    """Clients sending Screen in a loop until stopped; records when each call started and ended,
    the version that answered it, and failures."""

    def __init__(self, target: str, clients: int = 6) -> None:
        self.target, self.clients = target, clients
        self.calls: list[tuple[float, float, str]] = []
        """(started, finished, model version) per successful call, in time.monotonic()."""
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, i: int) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.ScreeningStub(channel)
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    version = stub.Screen(pb.ScreenRequest(image=jpeg(seed=i)), timeout=30).model.version
                    self.calls.append((started, time.monotonic(), version))
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")

    def first_answer(self, version: str) -> float | None:
        """When the first call answered by `version` finished."""
        return min((end for _, end, v in self.calls if v == version), default=None)

    def versions_started_after(self, moment: float) -> set[str]:
        return {v for start, _, v in self.calls if start > moment}

    def versions_finished_before(self, moment: float) -> set[str]:
        return {v for _, end, v in self.calls if end < moment}

    def wait_for_calls(self, count: int, started_after: float = 0.0, timeout_s: float = 60.0) -> None:
        """Until `count` calls that started after `started_after` have been answered (no fixed sleeps:
        a slow machine only takes longer)."""
        deadline = time.monotonic() + timeout_s
        while sum(1 for start, _, _ in self.calls if start > started_after) < count:
            assert time.monotonic() < deadline, f"fewer than {count} calls answered in {timeout_s} s; failures: {self.failures[:3]}"
            time.sleep(0.05)

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join()


def test_hot_reload_under_load_drops_nothing_and_switches_version(two_versions):
    """Calls in flight during a swap may finish on either model; every call that starts after the
    swap is answered by the new one, and none fails."""
    with ServerProcess(two_versions) as proc, grpc.insecure_channel(proc.target) as channel:
        stub = pb_grpc.ScreeningStub(channel)
        with Hammer(proc.target) as hammer:
            hammer.wait_for_calls(12)
            asked = time.monotonic()
            info = stub.ReloadModel(pb.ReloadModelRequest(version="v1"), timeout=120)
            swapped = time.monotonic()
            assert info.model.version == "v1"
            hammer.wait_for_calls(12, started_after=swapped)
        assert hammer.failures == [], proc.logs()
        assert hammer.versions_finished_before(asked) == {"v0"}
        assert hammer.versions_started_after(swapped) == {"v1"}

        # SIGHUP loads whatever manifest.json now marks current.
        WeightsStore(two_versions).set_current("v0")
        with Hammer(proc.target) as hammer:
            hammer.wait_for_calls(12)
            proc.signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and hammer.first_answer("v0") is None:
                time.sleep(0.05)
            swapped = hammer.first_answer("v0")
            assert swapped is not None, f"SIGHUP did not load v0 within 60 s; server log:\n{proc.logs()}"
            hammer.wait_for_calls(12, started_after=swapped)
        assert hammer.failures == [], proc.logs()
        assert hammer.versions_started_after(swapped) == {"v0"}


def test_a_model_that_fails_to_load_leaves_the_old_one_serving(two_versions):
    with ServerProcess(two_versions) as proc, grpc.insecure_channel(proc.target) as channel:
        stub = pb_grpc.ScreeningStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ReloadModel(pb.ReloadModelRequest(version="v9"), timeout=60)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "v9" in err.value.details()
        (two_versions / "v1.pt").write_bytes(b"not a model")
        with pytest.raises(grpc.RpcError) as err:
            stub.ReloadModel(pb.ReloadModelRequest(version="v1"), timeout=60)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "sha256" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.ReloadModel(pb.ReloadModelRequest(version="../../etc/passwd"), timeout=60)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert stub.Screen(pb.ScreenRequest(image=jpeg()), timeout=30).model.version == "v0"


def queue_depth(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("wildscreen_queue_depth ")))


def test_sigterm_lets_requests_in_flight_finish(untrained_weights):
    """SIGTERM once every request has reached the server and most are still waiting for the model:
    all of them are answered, and the server exits 0."""
    port = free_port()
    proc = ServerProcess(untrained_weights, "--max-batch-size", "2", "--grace-period-s", "30", "--metrics-port", str(port)).start()
    try:
        with grpc.insecure_channel(proc.target) as channel:
            stub = pb_grpc.ScreeningStub(channel)
            futures = [stub.Screen.future(pb.ScreenRequest(image=jpeg(1280, 960, seed=i)), timeout=60) for i in range(32)]
            deadline = time.monotonic() + 30
            while queue_depth(port) + sum(f.done() for f in futures) < len(futures):
                assert time.monotonic() < deadline, "the requests never all reached the server"
                time.sleep(0.01)
            in_flight = queue_depth(port)
            proc.signal(signal.SIGTERM)
            responses = [f.result() for f in futures]
        assert in_flight > 0, "everything was answered before SIGTERM: nothing was tested"
        assert all(r.model.version == "v0" for r in responses)
        assert proc.proc.wait(60) == 0
    finally:
        proc.stop()
    assert "shutting down" in proc.logs()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.slow
def test_overload_keeps_goodput_and_memory_bounded(untrained_weights):
    """192 clients with 1.5 s deadlines against a server that answers ~40 images/s on 2 cores:
    it refuses what it cannot do in time at once (with a pushback hint), only with the codes a
    client can act on, keeps answering, and its memory stays bounded. How much goodput it keeps is a
    speed figure, measured by `python -m bench.storm` (0.8x capacity is the target there); here only a
    collapse fails the test (below half of capacity), which no co-tenant of CI's machine causes."""
    images = [jpeg(480, 360, seed=i) for i in range(8)]
    with ServerProcess(untrained_weights, "--max-batch-size", "8") as proc:
        connection = Connection(target=proc.target)
        asyncio.run(run_load(connection, images, 4, 2.0))  # warm
        before = asyncio.run(run_load(connection, images, 16, 5.0))
        rss_before = rss_mb(proc.proc.pid)
        overload = asyncio.run(run_load(connection, images, 192, 10.0, deadline_s=1.5))
        rss_after = rss_mb(proc.proc.pid)
        after = asyncio.run(run_load(connection, images, 16, 5.0))  # capacity again: this machine's speed drifts
        assert proc.health() == 1
    capacity = (before.goodput + after.goodput) / 2
    print(f"\ncapacity {before.goodput:.1f} / {after.goodput:.1f} images/s\noverload: {overload.table()}\nRSS {rss_before:.0f} -> {rss_after:.0f} MB")
    assert set(overload.codes) <= {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}, overload.codes
    assert overload.codes["RESOURCE_EXHAUSTED"] > 0
    assert overload.goodput >= 0.5 * capacity
    assert rss_after - rss_before < 400


@pytest.mark.slow
def test_a_retry_storm_is_paced_and_logged_in_summary(untrained_weights):
    """64 clients that retry a refusal at once, against the same server with and without pacing:
    paced, the server answers far fewer refusals (each waits its turn, never past its deadline),
    only with codes a client can act on, and logs them as a few summary lines, not one per call."""
    images = [jpeg(480, 360, seed=i) for i in range(4)]
    storms = {}
    for pace in ("0", "20"):
        args = ("--max-batch-size", "2", "--max-queue-size", "4", "--max-refusals-per-s", pace)
        with ServerProcess(untrained_weights, *args) as proc:
            connection = Connection(target=proc.target)
            asyncio.run(run_load(connection, images, 2, 1.0))  # warm
            storms[pace] = asyncio.run(run_load(connection, images, 64, 4.0, deadline_s=2.0, ignore_pushback=True))
            assert proc.health() == 1
            logs = proc.logs()
        codes = storms[pace].codes
        print(f"\npace {pace}: {storms[pace].table()}")
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}, codes
        assert codes["OK"] > 0
        refusal_lines = [json.loads(line) for line in logs.splitlines() if '"RESOURCE_EXHAUSTED"' in line]
        # One line a second at most, each with the count it stands for.
        assert len(refusal_lines) <= 4.0 + 3 and sum(e["refused"] for e in refusal_lines) <= codes["RESOURCE_EXHAUSTED"]
    unpaced, paced = storms["0"].codes["RESOURCE_EXHAUSTED"], storms["20"].codes["RESOURCE_EXHAUSTED"]
    # Unpaced, the clients are refused as fast as the server can say no (hundreds a second);
    # paced at 20/s, about 20 a second plus the clients refused near their deadline.
    assert paced < unpaced / 3, (paced, unpaced)
    assert paced <= 20 * 4.0 + 20 * 0.1 + 64 * 2, paced


def test_a_client_with_the_retry_policy_gets_through_an_overload(untrained_weights):
    """The service config the README recommends: refused calls come back after the server's pushback
    hint (gRPC's own retry policy reads the trailer) and get through, without a line of client code."""
    port = free_port()
    args = ("--max-batch-size", "2", "--max-queue-size", "2", "--metrics-port", str(port))
    with ServerProcess(untrained_weights, *args) as proc, Connection(target=proc.target, retries=True).channel() as channel:
        stub = pb_grpc.ScreeningStub(channel)
        futures = [stub.Screen.future(pb.ScreenRequest(image=jpeg(480, 360, seed=i)), timeout=60) for i in range(12)]
        assert all(f.result().model.version == "v0" for f in futures)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    refused = float(re.search(r'^wildscreen_images_total\{code="RESOURCE_EXHAUSTED"\} (\S+)$', text, re.M).group(1))
    assert refused > 0, "no call was refused: the retries were not exercised"


def test_metrics_and_structured_logs(untrained_weights):
    port = free_port()
    with ServerProcess(untrained_weights, "--metrics-port", str(port)) as proc, grpc.insecure_channel(proc.target) as channel:
        stub = pb_grpc.ScreeningStub(channel)
        stub.Screen(pb.ScreenRequest(request_id="listing-77", image=jpeg()), timeout=30)
        with pytest.raises(grpc.RpcError):
            stub.Screen(pb.ScreenRequest(request_id="listing-78", image=b"junk"), timeout=30)
        list(stub.ScreenStream(iter([pb.ScreenRequest(image=jpeg()), pb.ScreenRequest(image=b"")]), timeout=30))
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        logs = proc.logs()
    assert 'wildscreen_requests_total{code="OK",rpc="Screen"} 1.0' in text
    assert 'wildscreen_requests_total{code="INVALID_ARGUMENT",rpc="Screen"} 1.0' in text
    assert 'wildscreen_images_total{code="OK"} 2.0' in text and 'wildscreen_images_total{code="INVALID_ARGUMENT"} 2.0' in text
    assert 'wildscreen_verdicts_total{class="none",verdict="CLEAR"} 2.0' in text
    assert "wildscreen_batch_size_bucket" in text and 'wildscreen_latency_seconds_bucket{le="0.5",stage="total"}' in text
    assert 'version="v0"' in text and "wildscreen_queue_depth 0.0" in text
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    access = [e for e in entries if e.get("logger") == "wildscreen.access"]
    ok = next(e for e in access if e.get("request_id") == "listing-77")
    assert ok["status"] == "OK" and ok["rpc"] == "Screen" and ok["peer"].startswith("ipv4:127.0.0.1") and ok["ms"] > 0
    assert next(e for e in access if e.get("request_id") == "listing-78")["status"] == "INVALID_ARGUMENT"
    assert next(e for e in access if e["rpc"] == "ScreenStream")["images"] == 2
    assert "JFIF" not in logs  # no image bytes in logs


# --- the bad-input suite ---------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def odd_images() -> list[tuple[str, bytes, tuple[int, int]]]:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    sixteen = cv2.imencode(".png", np.random.default_rng(1).integers(0, 65535, (40, 60), dtype=np.uint16))[1].tobytes()
    cases = [
        ("1x1", encoded(Image.new("RGB", (1, 1)), "PNG"), (1, 1)),
        ("16-bit", sixteen, (60, 40)),
        ("grayscale", encoded(rgb.convert("L"), "JPEG"), (60, 40)),
        ("cmyk", encoded(rgb.convert("CMYK"), "JPEG"), (60, 40)),
        ("alpha", encoded(rgb.convert("RGBA"), "PNG"), (60, 40)),
        ("palette", encoded(rgb.convert("P"), "PNG"), (60, 40)),
        ("animated gif", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]), (60, 40)),
    ]
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        size = (40, 60) if orientation >= 5 else (60, 40)
        cases.append((f"exif-{orientation}", encoded(rgb, "JPEG", exif=exif.tobytes()), size))
    return cases


@pytest.mark.parametrize("name,data,size", odd_images(), ids=[c[0] for c in odd_images()])
def test_odd_but_valid_images_are_screened(untrained_server, stub_for, name, data, size):
    response = stub_for(untrained_server).Screen(pb.ScreenRequest(image=data), timeout=30)
    assert (response.image_width, response.image_height) == size


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(min_size=0, max_size=2048), prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF"]))
def test_random_bytes_get_invalid_argument_and_the_server_survives(untrained_server, data, prefix):
    with grpc.insecure_channel(untrained_server.target) as channel:
        stub = pb_grpc.ScreeningStub(channel)
        try:
            stub.Screen(pb.ScreenRequest(image=prefix + data), timeout=30)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
            assert exc.details()
        assert untrained_server.health() == 1


def test_a_full_server_refuses_at_once_with_a_pushback_hint(untrained_weights):
    with ServerProcess(untrained_weights, "--max-batch-size", "8", "--max-queue-size", "8") as proc:
        with grpc.insecure_channel(proc.target) as channel:
            stub = pb_grpc.ScreeningStub(channel)
            # 48 calls sent at once (futures, not threads) to a server that holds 16: 8 in the batch, 8 queued.
            futures = [stub.Screen.future(pb.ScreenRequest(image=jpeg(800, 600, seed=i)), timeout=60) for i in range(48)]
            outcomes = [f.exception() or f.result() for f in futures]
            refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
            assert refused and all(o.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for o in refused)
            assert "server busy" in refused[0].details()
            pushback = dict(refused[0].trailing_metadata())["grpc-retry-pushback-ms"]
            assert 50 <= int(pushback) <= 5000
            assert len(outcomes) - len(refused) >= 16  # the queue and the batch were used
