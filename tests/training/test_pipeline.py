"""End to end, as the README's "Retraining" tells ML staff: labelled exports in every supported
format -> import -> check -> split -> train (one epoch) -> evaluate -> export -> promote -> the real
server serves the promoted model."""

import json

import pytest

from server.core.manifest import WeightsStore
from tests.support.server_process import ServerProcess
from tests.support.synthetic import write_coco_export, write_negatives, write_voc_export, write_yolo_dataset
from training.cli import main
from wildscreen.v1 import screening_pb2 as pb

pytestmark = pytest.mark.slow

NAMES = {0: "tusk", 1: "scales", 2: "tiger", 3: "snake"}


def test_labelled_folders_to_a_served_model(tmp_path, untrained_weights, stub_for):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("tusk: ivory\nscales: pangolin_scales\ntiger: tiger_parts\nsnake: live_reptile\n")
    ds = tmp_path / "dataset"
    write_yolo_dataset(tmp_path / "yolo", {"train": 20}, size=64, names=NAMES, stray_field=True)
    coco = write_coco_export(tmp_path / "coco", 10, NAMES, size=64)
    voc = write_voc_export(tmp_path / "voc", 10, NAMES, size=64)
    negatives = write_negatives(tmp_path / "negatives", 6, size=64)
    common = ["--dataset", str(ds), "--mapping", str(mapping)]
    assert main(["import", "yolo", str(tmp_path / "yolo"), *common]) == 0
    assert main(["import", "coco", str(coco), *common]) == 0
    assert main(["import", "voc", str(voc), *common]) == 0
    assert main(["import", "negatives", str(negatives), "--dataset", str(ds)]) == 0
    assert main(["check", str(ds)]) == 0
    assert main(["split", str(ds), "--seed", "1"]) == 0

    runs = tmp_path / "runs"
    assert main(["train", "--data", str(ds / "data.yaml"), "--epochs", "1", "--imgsz", "64", "--batch", "8",
                 "--device", "cpu", "--workers", "0", "--project", str(runs), "--name", "e2e", "plots=False"]) == 0
    best = runs / "e2e" / "weights" / "best.pt"
    assert best.is_file() and (runs / "e2e" / "wildscreen_run.json").is_file()

    assert main(["evaluate", "--model", str(best), "--data", str(ds / "data.yaml"), "--device", "cpu",
                 "--reports", str(tmp_path / "reports")]) == 0
    metrics = json.loads((runs / "e2e" / "evaluation" / "metrics.json").read_text())
    assert set(metrics["thresholds"]) == {"ivory", "pangolin_scales", "tiger_parts", "live_reptile"}
    assert (runs / "e2e" / "evaluation" / "model_card.md").read_text().startswith("# wildscreen model")

    exported = main(["export", "--model", str(best), "--samples", str(ds / "images"), "--max-samples", "8"])
    assert (runs / "e2e" / "weights" / "best.onnx").is_file()
    agreement = json.loads((runs / "e2e" / "weights" / "export.json").read_text())["onnx"]["agreement"]
    assert agreement["images"] == 8 and exported == (0 if agreement["agrees"] else 1)  # exit 1 says it disagreed

    weights = tmp_path / "weights"
    weights.mkdir()
    for f in untrained_weights.iterdir():
        (weights / f.name).write_bytes(f.read_bytes())
    assert main(["promote", str(runs / "e2e"), "--weights", str(weights)]) == 0
    manifest = WeightsStore(weights).get()
    assert manifest.version == "v1" and manifest.trained and manifest.exports.get("onnx")
    assert (weights / "v1.md").is_file() and manifest.training["options"]["epochs"] == 1
    with pytest.raises(Exception, match="never overwritten"):
        main(["promote", str(runs / "e2e"), "--weights", str(weights), "--version", "v1"])

    with ServerProcess(weights) as proc:
        stub = stub_for(proc)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        assert (info.model.version, info.model.sha256, info.input_size, info.trained) == ("v1", manifest.sha256, 64, True)
        for c in info.classes:
            assert c.review_threshold == pytest.approx(metrics["thresholds"][c.label]["review_threshold"], abs=1e-6)
        image = next((ds / "images" / "coco").glob("*.jpg")).read_bytes()
        assert stub.Screen(pb.ScreenRequest(image=image), timeout=30).model.version == "v1"
