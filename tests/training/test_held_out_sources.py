"""Source-held-out evaluation: split keeps whole sources apart, evaluate reports per source and can
hold sources out itself, calibration does not collapse to its floor. Fixtures fixed by construction."""

import numpy as np
import pytest

from server.core.detections import Detections
from server.core.policy import ClassPolicy
from server.core.taxonomy import LABELS
from tests.support.synthetic import write_negatives, write_yolo_dataset
from training.steps.calibrate import MIN_REVIEW_THRESHOLD, calibrate_class
from training.recipes.default_v2 import assign_groups, wildscan_group
from training.steps.evaluate import ScoredImages, hold_out_sources, image_level, source_table
from training.formats import import_source
from training.layout import Dataset
from training.mapping import ClassMapping
from training.steps.split import split_dataset


@pytest.fixture()
def dataset(tmp_path) -> Dataset:
    write_yolo_dataset(tmp_path / "src", {"all": 30}, size=64)
    ds = Dataset(tmp_path / "ds")
    import_source("yolo", tmp_path / "src", ds, "shapes", ClassMapping())
    import_source("negatives", write_negatives(tmp_path / "shop-a", 6, seed=4, size=64), ds, "shop-a", ClassMapping())
    import_source("negatives", write_negatives(tmp_path / "shop-b", 5, seed=5, size=64), ds, "shop-b", ClassMapping())
    import_source("negatives", write_negatives(tmp_path / "made", 4, seed=6, size=64), ds, "made", ClassMapping())
    return ds


def sources(ds: Dataset, members) -> set[str]:
    meta = ds.read_meta()
    return {meta[ds.relative(p)].source for p in members}


def test_split_keeps_calibration_holdout_and_train_only_sources_apart(dataset):
    split_dataset(dataset, holdout_sources=("shop-a",), calibration_sources=("shop-b",), train_only_sources=("made",))
    splits = dataset.read_splits()
    assert sources(dataset, splits["holdout"]) == {"shop-a"} and len(splits["holdout"]) == 6
    assert sources(dataset, splits["calibration"]) == {"shop-b"} and len(splits["calibration"]) == 5
    assert {"shop-a", "shop-b"}.isdisjoint(sources(dataset, splits["train"] + splits["val"] + splits["test"]))
    assert "made" in sources(dataset, splits["train"])
    assert "made" not in sources(dataset, splits["val"] + splits["test"])
    text = dataset.data_yaml.read_text()
    assert "calibration.txt" in text and "holdout.txt" in text


def test_a_source_cannot_be_both_held_out_and_calibrated_on(dataset):
    with pytest.raises(ValueError, match="shop-a"):
        split_dataset(dataset, holdout_sources=("shop-a",), calibration_sources=("shop-a",))


def test_evaluate_holds_out_sources_it_did_not_train_on(dataset):
    split_dataset(dataset, holdout_sources=("shop-a",), calibration_sources=("shop-b",))
    splits = dataset.read_splits()
    moved = hold_out_sources(dataset, splits, ("shop-b",))
    assert sources(dataset, moved["holdout"]) == {"shop-a", "shop-b"} and len(moved["holdout"]) == 11
    assert not moved["calibration"]
    trained_on = next(iter(sources(dataset, splits["train"])))
    with pytest.raises(ValueError, match="train split"):
        hold_out_sources(dataset, splits, (trained_on,))
    with pytest.raises(ValueError, match="no images"):
        hold_out_sources(dataset, splits, ("nowhere",))


def scored(rows: list[tuple[str, dict[str, float], set[str]]]) -> ScoredImages:
    """Hand-made scores: (source, {label: score}, labels the image shows)."""
    n = len(rows)
    scores = np.zeros((n, len(LABELS)), np.float32)
    truth = np.zeros((n, len(LABELS)), bool)
    for i, (_, s, t) in enumerate(rows):
        for label, v in s.items():
            scores[i, LABELS.index(label)] = v
        for label in t:
            truth[i, LABELS.index(label)] = True
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    return ScoredImages([f"img{i}" for i in range(n)], scores, truth, [r[0] for r in rows], [empty] * n)


def test_per_source_table_counts_reviews_and_classes_found():
    policies = tuple(ClassPolicy(i, label, 0.5, 0.8) for i, label in enumerate(LABELS))
    level = image_level(scored([
        ("shop", {"ivory": 0.6}, set()),          # clean, sent to review
        ("shop", {}, set()),                       # clean, clear
        ("shop", {"ivory": 0.9}, set()),          # clean, flagged
        ("shop", {}, set()),
        ("seizure", {"ivory": 0.7}, {"ivory"}),   # found
        ("seizure", {"tiger_parts": 0.9}, {"ivory"}),  # flagged, but for the wrong class: not found
        ("seizure", {"ivory": 0.2}, {"ivory"}),   # missed
        ("seizure", {"ivory": 0.95, "tiger_parts": 0.1}, {"ivory", "tiger_parts"}),  # only one of two found
    ]), policies)
    shop, seizure = level["by_source"]["shop"], level["by_source"]["seizure"]
    assert shop["images"] == 4 and shop["clean_images"] == 4
    assert shop["review_or_flag_rate"] == pytest.approx(0.5) and shop["flag_rate"] == pytest.approx(0.25)
    assert shop["class_found_rate"] is None
    assert seizure["class_images"] == 4 and seizure["class_found_rate"] == pytest.approx(0.25)
    assert seizure["review_or_flag_rate"] == pytest.approx(0.75)
    lines = source_table(level)
    assert lines[0].split()[:2] == ["source", "images"]
    assert any(line.startswith("seizure") and "25.0%" in line for line in lines)
    assert any(line.startswith("shop") and line.rstrip().endswith("-") for line in lines)


def test_unreachable_recall_does_not_collapse_to_the_floor():
    # Half of the positives score high; the other half are indistinguishable from the faint scores
    # the negatives get. 0.90 recall is out of reach at any threshold worth having.
    positives = np.r_[np.ones(20, bool), np.zeros(200, bool)]
    scores = np.r_[np.full(10, 0.8), np.linspace(0.011, 0.04, 10), np.linspace(0.0, 0.04, 200)]
    cal = calibrate_class(scores, positives, review_budget=0.5)
    assert cal.review_threshold >= MIN_REVIEW_THRESHOLD
    assert cal.review.recall == pytest.approx(0.5)
    assert cal.review_threshold == pytest.approx(0.8)  # the highest threshold that keeps the reachable recall
    assert "not reached" in cal.note


def test_unreachable_recall_trades_the_last_points_for_a_higher_threshold():
    # Recall climbs 0.70 -> 0.72 only by dropping from 0.6 to 0.1: not worth the reviews.
    positives = np.r_[np.ones(50, bool), np.zeros(100, bool)]
    scores = np.r_[np.full(35, 0.6), np.full(1, 0.1), np.zeros(14), np.zeros(100)]
    cal = calibrate_class(scores, positives, review_budget=None, recall_slack=0.05)
    assert cal.review_threshold == pytest.approx(0.6) and cal.review.recall == pytest.approx(0.70)
    strict = calibrate_class(scores, positives, review_budget=None, recall_slack=0.0)
    assert strict.review_threshold == pytest.approx(0.1) and strict.review.recall == pytest.approx(0.72)


def test_wildscan_groups_join_a_photographers_series_and_roles_keep_groups_whole():
    a = wildscan_group({"class": "ivory", "file": "images/305/1Elephant-ivory-raw-photo-2-Matthew-Pritchett-FREELAND.jpg", "species_id": "305"})
    b = wildscan_group({"class": "ivory", "file": "images/305/1Elephant-ivory-raw-photo-Matthew-Pritchett-FREELAND.jpg", "species_id": "305"})
    c = wildscan_group({"class": "ivory", "file": "images/305/1Louvre-public-domain.jpg", "species_id": "305"})
    assert a == b != c
    assert wildscan_group({"class": "none", "file": "images/19/x.jpg", "species_id": "19"}) == "species19"
    groups = {f"g{i}": 1 + i % 3 for i in range(30)}
    roles = assign_groups(groups, {"holdout": 0.3, "calibration": 0.2}, seed=0)
    assert set(roles) == set(groups) and set(roles.values()) == {"train", "holdout", "calibration"}
    total = sum(groups.values())
    share = {r: sum(n for g, n in groups.items() if roles[g] == r) / total for r in ("holdout", "calibration")}
    assert 0.2 <= share["holdout"] <= 0.35 and 0.1 <= share["calibration"] <= 0.25
    assert assign_groups(groups, {"holdout": 0.3, "calibration": 0.2}, seed=0) == roles
