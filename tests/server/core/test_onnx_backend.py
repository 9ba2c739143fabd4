"""The server picks ONNX Runtime only for an export that agreed with the .pt, and answers the same."""

import json

import grpc
import pytest

from server.core.manifest import WeightsStore
from server.process import ServerProcess
from tests.support.images import scenes
from training.export import export
from training.layout import Dataset
from training.promote import promote
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights_with_onnx(tiny_run, synthetic_dataset, tmp_path_factory):
    best = tiny_run / "weights" / "best.pt"
    record = export(best, Dataset(synthetic_dataset.parent).read_split("test")[:8])
    weights = tmp_path_factory.mktemp("onnx") / "weights"
    promote(best, weights, version="tiny-onnx", onnx=record["onnx"]["file"], onnx_agreement=record["onnx"]["agreement"])
    return weights


def screen_all(target: str) -> list:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ScreeningStub(channel)
        return [stub.Screen(pb.ScreenRequest(image=image, min_confidence=0.2), timeout=30) for image in scenes()]


def test_onnx_and_torch_servers_answer_alike(weights_with_onnx):
    manifest = WeightsStore(weights_with_onnx).get()
    assert manifest.exports["onnx"].agreement["agrees"]
    with ServerProcess(weights_with_onnx, "--backend", "torch") as torch_server:
        reference = screen_all(torch_server.target)
    with ServerProcess(weights_with_onnx, "--backend", "onnx") as onnx_server:
        with grpc.insecure_channel(onnx_server.target) as channel:
            assert pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=10).backend == "onnxruntime"
        candidate = screen_all(onnx_server.target)
    for r, c in zip(reference, candidate):
        assert r.verdict == c.verdict and len(r.detections) == len(c.detections)
        for a, b in zip(r.detections, c.detections):
            assert a.label == b.label and abs(a.confidence - b.confidence) < 0.02
            assert abs(a.box.x_min - b.box.x_min) < 2 and abs(a.box.y_max - b.box.y_max) < 2


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
