"""The server picks ONNX Runtime only for an export that agreed with the .pt, and answers the same."""

import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from server.core.engine import InferenceEngine
from server.core.manifest import WeightsStore
from tests.support.server_process import ServerProcess
from tests.support.agreement import LOW_FLOOR, finds_again, from_response
from tests.support.images import scenes
from training.steps.export import export
from training.layout import Dataset
from training.steps.promote import promote
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights_with_onnx(tiny_run, synthetic_dataset, tmp_path_factory):
    best = tiny_run / "weights" / "best.pt"
    record = export(best, Dataset(synthetic_dataset.parent).read_split("test")[:8])
    weights = tmp_path_factory.mktemp("onnx") / "weights"
    promote(best, weights, version="tiny-onnx", exports={"onnx": record["onnx"]})
    return weights


def screen_all(target: str) -> list:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ScreeningStub(channel)
        return [stub.Screen(pb.ScreenRequest(image=image, min_confidence=LOW_FLOOR, max_detections=300), timeout=30) for image in scenes()]


def test_onnx_and_torch_servers_answer_alike(weights_with_onnx):
    manifest = WeightsStore(weights_with_onnx).get()
    assert manifest.exports["onnx"].agreement["agrees"]
    with ServerProcess(weights_with_onnx, "--backend", "torch") as torch_server:
        reference = screen_all(torch_server.target)
    with ServerProcess(weights_with_onnx, "--backend", "onnx") as onnx_server:
        with grpc.insecure_channel(onnx_server.target) as channel:
            assert pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=10).backend == "onnxruntime"
        candidate = screen_all(onnx_server.target)
    ours, theirs = [from_response(r) for r in reference], [from_response(c) for c in candidate]
    assert finds_again(ours, theirs, top=10, share=0.0, min_iou=0.98, relative_confidence=0.01, absolute_confidence=0.002) == []
    assert finds_again(theirs, ours, top=10, share=0.0, min_iou=0.98, relative_confidence=0.01, absolute_confidence=0.002) == []
    thresholds = [t for c in reference[0].thresholds for t in (c.review_threshold, c.flag_threshold)]
    for r, c in zip(reference, candidate):
        # The same verdict, unless a box sits right at a threshold (float noise may put it either side).
        if all(abs(d.confidence - t) > 0.005 for d in r.detections for t in thresholds):
            assert r.verdict == c.verdict


def test_auto_backend_chooses_by_speed_and_never_a_disagreeing_export(weights_with_onnx):
    with ServerProcess(weights_with_onnx) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            assert pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=10).backend in ("torch", "onnxruntime")
        assert "backend choice" in proc.logs()
    index = json.loads((weights_with_onnx / "manifest.json").read_text())
    index["versions"]["tiny-onnx"]["exports"]["onnx"]["agreement"]["agrees"] = False
    (weights_with_onnx / "manifest.json").write_text(json.dumps(index))
    with ServerProcess(weights_with_onnx) as proc, grpc.insecure_channel(proc.target) as channel:
        assert pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=10).backend == "torch"


def test_copies_side_by_side_are_for_onnx_runtime_alone(weights_with_onnx):
    store = WeightsStore(weights_with_onnx)
    onnx = InferenceEngine.load(store, backend="onnx", threads=2)
    copies = onnx.side_by_side(0, threads=2)
    assert [c.backend.threads for c in copies] == [1, 1]
    assert [c.backend.name for c in copies] == ["onnxruntime", "onnxruntime"]
    assert onnx.side_by_side(1, threads=2) == [] and len(onnx.side_by_side(3, threads=2)) == 3
    assert InferenceEngine.load(store, backend="torch", threads=2).side_by_side(0, threads=2) == []


def test_a_server_with_model_copies_side_by_side_answers_as_one_without(weights_with_onnx):
    with ServerProcess(weights_with_onnx, "--backend", "onnx", "--model-instances", "1") as one:
        reference = screen_all(one.target)
    with ServerProcess(weights_with_onnx, "--backend", "onnx", "--model-instances", "2", "--torch-threads", "2",
                       "--max-batch-size", "2") as two:
        with grpc.insecure_channel(two.target) as channel, ThreadPoolExecutor(8) as pool:
            stub = pb_grpc.ScreeningStub(channel)
            request = lambda image: stub.Screen(pb.ScreenRequest(image=image, min_confidence=LOW_FLOOR, max_detections=300), timeout=30)
            candidate = list(pool.map(request, scenes() * 3))  # at once: batches run side by side
        assert '"model_threads": 2' in two.logs()
    ours, theirs = [from_response(r) for r in reference * 3], [from_response(c) for c in candidate]
    assert finds_again(ours, theirs, top=10, share=0.0, min_iou=0.98, relative_confidence=0.01, absolute_confidence=0.002) == []
    assert finds_again(theirs, ours, top=10, share=0.0, min_iou=0.98, relative_confidence=0.01, absolute_confidence=0.002) == []
