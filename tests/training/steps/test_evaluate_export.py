"""Evaluation and export of a model that really learned something (the tiny synthetic-shapes model)."""

import json
from collections import Counter

import pytest

from training.steps.evaluate import EvaluationOptions, evaluate
from training.steps.export import export
from training.layout import Dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluation(tiny_run, synthetic_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    result = evaluate(EvaluationOptions(model=tiny_run / "weights" / "best.pt", data=synthetic_dataset, out=out, device="cpu",
                                        reports=out / "reports"))
    return out, result


def test_detection_and_image_level_metrics(evaluation, synthetic_dataset):
    """Counted against the test split's own labels (fixed when the dataset was written), never
    against what the model reached: that differs from one CPU to the next."""
    from server.core.taxonomy import LABELS

    out, result = evaluation
    dataset = Dataset(synthetic_dataset.parent)
    boxes, images = Counter(), Counter()
    for image in dataset.read_split("test"):
        ids = [int(line.split()[0]) for line in dataset.label_path(image).read_text().splitlines() if line.strip()]
        boxes.update(LABELS[i] for i in ids)
        images.update({LABELS[i] for i in ids})
    detection = result["metrics"]["detection"]
    assert {label for label in detection if label != "all"} == set(boxes)
    for label, count in boxes.items():
        assert detection[label]["instances"] == count and 0.0 <= detection[label]["ap50"] <= 1.0, (label, detection[label])
    level = result["metrics"]["image_level"]["test"]
    assert level["images"] == len(dataset.read_split("test"))
    assert {label: entry["images"] for label, entry in level["per_class"].items() if entry["images"]} == dict(images)
    assert 0.0 <= level["clean"]["flag_rate"] <= level["clean"]["review_or_flag_rate"] <= 1.0
    assert json.loads((out / "metrics.json").read_text()) == result


def test_contact_sheets_show_what_was_found_and_missed(evaluation):
    import cv2

    out, result = evaluation
    found = out / "reports" / "ivory_found.png"
    assert found.is_file()
    sheet = cv2.imread(str(found))
    assert sheet.shape[1] == 8 * 200 and sheet.shape[0] % 214 == 0
    positives = result["metrics"]["image_level"]["test"]["per_class"]["ivory"]["images"]
    recall = result["thresholds"]["ivory"]["test"]["review"]["recall"]
    assert (out / "reports" / "ivory_missed.png").is_file() == (recall < 1.0), (positives, recall)


def test_thresholds_are_calibrated_on_val_and_measured_on_test(evaluation):
    _, result = evaluation
    for label, t in result["thresholds"].items():
        assert t["calibration_split"] == "val"
        assert 0 < t["review_threshold"] <= 1
        assert t["flag_threshold"] is None or t["flag_threshold"] >= t["review_threshold"]
        assert t["test"]["review"]["threshold"] == t["review_threshold"]


def test_model_card_and_plots(evaluation):
    out, _ = evaluation
    card = (out / "model_card.md").read_text()
    for heading in ("## What it saw", "## Detection metrics", "## Thresholds", "## Image-level results, test split"):
        assert heading in card
    for plot in ("image_pr_test.png", "confusion_matrix_normalized.png", "BoxPR_curve.png"):
        assert (out / plot).stat().st_size > 1000 and f"]({plot})" in card


def test_onnx_export_agrees_with_the_pt(tiny_run, synthetic_dataset):
    samples = Dataset(synthetic_dataset.parent).read_split("test")[:8]
    record = export(tiny_run / "weights" / "best.pt", samples)
    agreement = record["onnx"]["agreement"]
    assert agreement["reference_detections"] > 0
    assert agreement["agrees"] and agreement["matched"] == agreement["reference_detections"]
    assert (tiny_run / "weights" / "export.json").is_file()


def test_mining_adds_false_positives_to_train_as_background(tiny_run, tmp_path):
    import shutil

    from tests.support.synthetic import write_negatives, write_yolo_dataset
    from training.formats import import_source
    from training.mapping import ClassMapping
    from training.steps.mine import mine
    from training.steps.split import split_dataset

    write_yolo_dataset(tmp_path / "src", {"all": 20}, size=128)
    dataset = Dataset(tmp_path / "ds")
    import_source("yolo", tmp_path / "src", dataset, "shapes", ClassMapping())
    split_dataset(dataset)
    # A "clean" pool in which the model will fire: shapes it has learned, and plain noise.
    pool = write_negatives(tmp_path / "pool", 4, size=128)
    for i, image in enumerate(sorted((tmp_path / "src" / "images" / "all").glob("*.jpg"))[:4]):
        shutil.copyfile(image, pool / f"lookalike_{i}.jpg")
    # The threshold sits below the model's strongest detection on every look-alike, wherever that is
    # on this machine, so each of them is a hit by construction.
    from server.core.decoding import ImageDecoder
    from tests.support.agreement import LOW_FLOOR
    from training.modelfile import candidate_engine

    engine = candidate_engine(tiny_run / "weights" / "best.pt", "cpu")
    decoder = ImageDecoder(engine.input_size)
    lookalikes = sorted(pool.glob("lookalike_*.jpg"))
    strongest = [float(engine.run([decoder.prepare(p.read_bytes())[1]], LOW_FLOOR)[0].confidence.max()) for p in lookalikes]
    hits = mine(tiny_run / "weights" / "best.pt", sorted(pool.glob("*.jpg")), pool, dataset, "mined", 0.8 * min(strongest), "cpu")
    hit_names = {p.name for p, _ in hits}
    assert {p.name for p in lookalikes} <= hit_names
    train = dataset.read_split("train")
    mined = [p for p in train if "/mined/" in str(p)]
    assert {p.name for p in mined} == hit_names
    assert all(dataset.label_path(p).read_text() == "" for p in mined)
