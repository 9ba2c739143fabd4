"""Which backend serves: the rules on manifest entries (pure), then the real engine on real files
falling back, with its reason, when the int8 entry disagrees, loses AP50, or is missing."""

import json

import pytest

from server.core.choice import allowed_backends
from server.core.engine import InferenceEngine
from server.core.errors import ModelError
from server.core.manifest import ExportedFile, ModelManifest, WeightsStore
from server.core.policy import ClassPolicy
from server.core.taxonomy import TAXONOMY

AGREED = {"agrees": True, "matched": 9, "reference_detections": 10, "required": {"min_matched_share": 0.9}}
DISAGREED = {"agrees": False, "matched": 5, "reference_detections": 10, "required": {"min_matched_share": 0.9}}


def manifest(**exports: dict) -> ModelManifest:
    return ModelManifest(
        name="m", version="v9", file="v9.pt", sha256="0" * 64, input_size=320, trained=True,
        classes=tuple(ClassPolicy(c.id, c.label, 0.25, None) for c in TAXONOMY),
        exports={kind: ExportedFile(f"v9.{kind}.onnx", "0" * 64, a) for kind, a in exports.items()},
    )


@pytest.mark.parametrize(
    ("exports", "kinds", "note"),
    [
        ({"onnx": AGREED, "int8": AGREED}, ["torch", "onnx", "int8"], None),
        ({"onnx": AGREED, "int8": AGREED | {"ap50": {"split": "test", "reference": 0.9, "int8": 0.895, "drop_points": 0.5}}},
         ["torch", "onnx", "int8"], None),
        ({"onnx": AGREED, "int8": DISAGREED}, ["torch", "onnx"], "int8 not used: its detections did not agree with the .pt's (5/10 found again, 90% needed)"),
        ({"onnx": AGREED, "int8": AGREED | {"ap50": {"split": "test", "reference": 0.9, "int8": 0.88, "drop_points": 2.0}}},
         ["torch", "onnx"], "int8 not used: it loses 2.00 points of AP50 on test (at most 1)"),
        ({"onnx": AGREED}, ["torch", "onnx"], "int8 not used: model v9 has no int8 export"),
        ({"onnx": DISAGREED, "int8": {}}, ["torch"], "int8 not used: no agreement check recorded"),
    ],
)
def test_auto_on_cpu_allows_only_exports_that_agree(exports, kinds, note):
    choice = allowed_backends(manifest(**exports), "auto", "cpu")
    assert choice.kinds == kinds
    if note:
        assert note in choice.notes


def test_auto_on_cuda_uses_tensorrt_only_when_its_check_passes():
    m = manifest(onnx=AGREED, int8=AGREED)
    assert allowed_backends(m, "auto", "cuda").kinds == ["torch"]
    assert allowed_backends(m, "auto", "cuda", {"tensorrt": (True, "agrees")}).kinds == ["torch", "tensorrt"]
    refused = allowed_backends(m, "auto", "cuda", {"tensorrt": (False, "TensorRT is not installed here")})
    assert refused.kinds == ["torch"] and refused.notes == ["tensorrt not used: TensorRT is not installed here"]


@pytest.mark.parametrize(
    ("requested", "device", "exports", "error"),
    [
        ("int8", "cpu", {"onnx": AGREED}, "has no int8 export; run `training export --int8` first"),
        ("int8", "cuda", {"int8": AGREED}, "runs on the CPU only; use --device cpu"),
        ("tensorrt", "cpu", {}, "runs on a CUDA device only"),
        ("fast", "cpu", {}, "is not one of"),
    ],
)
def test_a_forced_backend_that_cannot_run_is_a_clear_error(requested, device, exports, error):
    with pytest.raises(ModelError, match=error.replace("(", r"\(").replace(")", r"\)").replace("`", ".")):
        allowed_backends(manifest(**exports), requested, device)


def test_a_forced_export_that_disagrees_serves_with_a_warning():
    choice = allowed_backends(manifest(int8=DISAGREED), "int8", "cpu")
    assert choice.kinds == ["int8"] and "WARNING: its detections did not agree" in choice.notes[0]


@pytest.mark.slow
def test_the_engine_falls_back_and_says_why(int8_weights):
    """Real files: a disagreeing entry, a too large AP50 drop, a missing entry."""
    store = WeightsStore(int8_weights)
    index_path = int8_weights / "manifest.json"
    original = json.loads(index_path.read_text())

    def with_int8(agreement: dict | None) -> InferenceEngine:
        index = json.loads(json.dumps(original))
        if agreement is None:
            del index["versions"]["tiny-int8"]["exports"]["int8"]
        else:
            index["versions"]["tiny-int8"]["exports"]["int8"]["agreement"] = agreement
        index_path.write_text(json.dumps(index))
        return InferenceEngine.load(store, device="cpu", backend="auto", batch_size_for_choice=2)

    try:
        forced = InferenceEngine.load(store, device="cpu", backend="int8")
        assert forced.backend.name == "onnxruntime-int8" and forced.backend_reason.startswith("onnxruntime-int8; int8 asked for")
        cases = [
            (DISAGREED, "int8 not used: its detections did not agree"),
            (AGREED | {"ap50": {"split": "test", "reference": 0.9, "int8": 0.85, "drop_points": 5.0}}, "int8 not used: it loses 5.00 points"),
            (None, "int8 not used: model tiny-int8 has no int8 export"),
        ]
        for agreement, why in cases:
            engine = with_int8(agreement)
            assert engine.backend.name in ("torch", "onnxruntime") and why in engine.backend_reason, engine.backend_reason
        chosen = with_int8(AGREED)
        assert "fastest here" in chosen.backend_reason and "onnxruntime-int8" in chosen.backend_reason
    finally:
        index_path.write_text(json.dumps(original))


@pytest.fixture(scope="module")
def int8_weights(tiny_run, synthetic_dataset, tmp_path_factory):
    from training.steps.export import export
    from training.layout import Dataset
    from training.steps.promote import promote

    dataset = Dataset(synthetic_dataset.parent)
    best = tiny_run / "weights" / "best.pt"
    record = export(best, dataset.read_split("test")[:4], int8_calibration=dataset.read_split("train")[:16])
    weights = tmp_path_factory.mktemp("int8") / "weights"
    promote(best, weights, version="tiny-int8", exports={kind: record[kind] for kind in ("onnx", "int8")})
    return weights
