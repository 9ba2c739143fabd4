"""`training export --int8`: the tiny model quantized, calibrated on its own training images, held
to the int8 tolerance against the .pt, with its AP50 drop, and round-tripped through promote."""

import json
from pathlib import Path

import pytest

from server.core.decoding import ImageDecoder
from server.core.errors import ModelError
from server.core.manifest import ModelManifest, WeightsStore, sha256_of
from tests.support.agreement import LOW_FLOOR, finds_again
from tests.support.images import scenes
from training.steps.export import INT8, export
from training.layout import Dataset, images_in
from training.modelfile import candidate_engine
from training.steps.promote import promote
from training.steps.quantize import quantize_int8

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8_record(tiny_run, synthetic_dataset):
    dataset = Dataset(synthetic_dataset.parent)
    return export(tiny_run / "weights" / "best.pt", dataset.read_split("test")[:8],
                  int8_calibration=dataset.read_split("train")[:48], data=synthetic_dataset)


def test_int8_export_is_checked_with_its_own_tolerance_and_ap50(int8_record, tiny_run):
    entry = int8_record["int8"]
    assert entry["file"].endswith(".int8.onnx") and entry["calibration_images"] == 48
    agreement = entry["agreement"]
    assert agreement["required"] == {"min_iou": INT8.min_iou, "max_confidence_difference": INT8.max_confidence_difference,
                                     "min_matched_share": INT8.min_matched_share}
    assert agreement["reference_detections"] > 0
    assert agreement["agrees"] == (agreement["matched"] >= INT8.min_matched_share * agreement["reference_detections"])
    ap50 = agreement["ap50"]
    assert 0.0 <= ap50["int8"] <= 1.0 and 0.0 <= ap50["reference"] <= 1.0
    assert ap50["drop_points"] == pytest.approx(100 * (ap50["reference"] - ap50["int8"]), abs=1e-3)
    assert json.loads((tiny_run / "weights" / "export.json").read_text())["int8"] == entry


def test_int8_finds_the_reference_top_detections(int8_record, tiny_run):
    """Tolerances for int8 against FP32 torch, relative to what the reference finds: each image's
    3 strongest detections (of those with half the best one's confidence) found again, same class,
    IoU >= 0.7, confidence within 30% of the reference's."""
    best = tiny_run / "weights" / "best.pt"
    reference = candidate_engine(best, "cpu")
    int8 = candidate_engine(best, "cpu", backend_path=int8_record["int8"]["file"])
    prepared = [ImageDecoder(reference.input_size).prepare(d)[1] for d in scenes()]
    ours, theirs = reference.run(prepared, LOW_FLOOR), int8.run(prepared, LOW_FLOOR)
    assert finds_again(ours, theirs, top=3, share=0.5, min_iou=0.7, relative_confidence=0.3, absolute_confidence=0.02) == []


def test_int8_entry_round_trips_through_promote_and_the_manifest(int8_record, tiny_run, tmp_path):
    best = tiny_run / "weights" / "best.pt"
    onnx, int8 = int8_record["onnx"], int8_record["int8"]
    promote(best, tmp_path / "weights", version="t8", exports={"onnx": onnx, "int8": int8})
    store = WeightsStore(tmp_path / "weights")
    manifest = store.get("t8")
    entry = manifest.exports["int8"]
    assert entry.file == "t8.int8.onnx" and entry.sha256 == sha256_of(tmp_path / "weights" / "t8.int8.onnx")
    assert entry.agreement == int8["agreement"]
    assert store.verified_path(entry.file, entry.sha256).is_file()
    assert ModelManifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    # Adding an export to a promoted version: once; a second one is refused, the file untouched.
    with pytest.raises(ModelError, match="already has"):
        store.add_export("t8", "int8", int8["file"], int8["agreement"])
    promote(best, tmp_path / "weights", version="t9", make_current=False)
    added = store.add_export("t9", "int8", int8["file"], int8["agreement"])
    assert store.get("t9").exports["int8"] == added and added.file == "t9.int8.onnx"


def test_calibration_takes_a_count_that_is_not_a_whole_number_of_batches(int8_record, synthetic_dataset, tmp_path):
    """11 images: Percentile calibration used to fail on the short last batch of 8."""
    import onnx
    import onnxruntime

    train = Dataset(synthetic_dataset.parent).read_split("train")[:11]
    out = quantize_int8(Path(int8_record["onnx"]["file"]), tmp_path / "odd.int8.onnx", train, int8_record["int8"]["input_size"])
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(out)).graph.node)
    assert session.get_inputs()[0].name


def test_a_split_list_names_the_same_images_as_the_dataset(synthetic_dataset):
    """`--calibration train.txt`: the list's `./` paths resolve against its own folder."""
    dataset = Dataset(synthetic_dataset.parent)
    listed = images_in(dataset.split_file("train"))
    assert listed == sorted(dataset.read_split("train")) and all(p.is_file() for p in listed)
