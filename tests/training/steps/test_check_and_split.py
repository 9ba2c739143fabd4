import shutil

import cv2
import pytest

from tests.support.synthetic import write_negatives, write_yolo_dataset
from training.steps.check import check_dataset, fix
from training.formats import import_source
from training.layout import Dataset, MetaRow
from training.mapping import ClassMapping
from training.layout import image_classes
from training.steps.split import split_dataset


@pytest.fixture()
def dataset(tmp_path) -> Dataset:
    write_yolo_dataset(tmp_path / "src", {"all": 40}, size=64)
    ds = Dataset(tmp_path / "ds")
    import_source("yolo", tmp_path / "src", ds, "shapes", ClassMapping())
    import_source("negatives", write_negatives(tmp_path / "neg", 8, size=64), ds, "negatives", ClassMapping())
    return ds


def image(ds: Dataset, i: int):
    return ds.root / "images" / "shapes" / "all" / f"all_{i:04d}.jpg"


def plant_defects(ds: Dataset) -> dict[str, str]:
    """One of each defect `check` must find; returns kind -> relative path."""
    planted = {}
    data = image(ds, 0).read_bytes()
    image(ds, 0).write_bytes(data[: len(data) // 2])
    planted["unreadable_image"] = ds.relative(image(ds, 0))
    ds.label_path(image(ds, 1)).write_text("9 0.5 0.5 0.2 0.2\n")  # class id out of range
    ds.label_path(image(ds, 2)).write_text("0 0.95 0.5 0.3 0.2\n")  # leaves the image
    ds.label_path(image(ds, 3)).write_text("0 0.5 0.5 0.0 0.2\n")  # zero area
    planted["bad_label"] = ds.relative(image(ds, 1))
    orphan = ds.root / "labels" / "shapes" / "all" / "ghost.txt"
    orphan.write_text("0 0.5 0.5 0.2 0.2\n")
    planted["orphan_label"] = ds.relative(orphan)
    ds.label_path(image(ds, 4)).unlink()
    planted["missing_label"] = ds.relative(image(ds, 4))
    shutil.copyfile(image(ds, 5), image(ds, 5).with_name("copy_5.jpg"))
    shutil.copyfile(ds.label_path(image(ds, 5)), ds.label_path(image(ds, 5).with_name("copy_5.jpg")))
    planted["exact_duplicate"] = ds.relative(image(ds, 5).with_name("copy_5.jpg"))
    pixels = cv2.imread(str(image(ds, 6)))
    near = image(ds, 6).with_name("near_6.jpg")
    cv2.imwrite(str(near), cv2.resize(pixels, None, fx=0.9, fy=0.9), [cv2.IMWRITE_JPEG_QUALITY, 70])
    shutil.copyfile(ds.label_path(image(ds, 6)), ds.label_path(near))
    planted["near_duplicate"] = ds.relative(near)
    return planted


def test_check_finds_each_planted_defect_and_fix_quarantines(dataset):
    planted = plant_defects(dataset)
    report = check_dataset(dataset)
    found = {(f.kind, f.path) for f in report.findings}
    for kind, path in planted.items():
        assert (kind, path) in found, f"{kind} at {path} not found; found {sorted(found)}"
    bad_label_messages = " ".join(f.message for f in report.findings if f.kind == "bad_label")
    assert "class id 9" in bad_label_messages and "leaves the image" in bad_label_messages and "zero-area" in bad_label_messages
    assert report.errors
    moved = fix(dataset, report)
    assert planted["unreadable_image"] in moved and (dataset.root / "quarantine" / "unreadable_image" / planted["unreadable_image"]).exists()
    assert not check_dataset(dataset).errors  # what is left is clean


def test_leakage_across_splits_is_an_error(dataset):
    split_dataset(dataset, seed=0)
    train = dataset.read_split("train")
    test_image = dataset.read_split("test")[0]
    leaked = test_image.with_name("leaked.jpg")
    shutil.copyfile(train[0], leaked)
    shutil.copyfile(dataset.label_path(train[0]), dataset.label_path(leaked))
    dataset.write_splits({"train": train, "val": dataset.read_split("val"), "test": dataset.read_split("test") + [leaked]})
    report = check_dataset(dataset)
    leaks = [f for f in report.findings if f.kind == "leakage"]
    assert leaks and leaks[0].severity == "error"
    fix(dataset, report)
    assert leaked not in dataset.read_split("test")


def test_check_cli_exit_status(dataset):
    from training.cli import main

    assert main(["check", str(dataset.root)]) == 0
    plant_defects(dataset)
    assert main(["check", str(dataset.root)]) == 1


def test_split_keeps_groups_and_near_duplicates_together_and_is_seeded(dataset):
    meta = dataset.read_meta()
    group = [dataset.relative(image(dataset, i)) for i in (10, 11, 12, 13, 14)]
    for rel in group:
        meta[rel] = MetaRow(rel, "shapes", "seizure-42", meta[rel].origin)
    dataset.write_meta(meta)
    near = image(dataset, 20).with_name("near_20.jpg")
    cv2.imwrite(str(near), cv2.GaussianBlur(cv2.imread(str(image(dataset, 20))), (3, 3), 0))
    shutil.copyfile(dataset.label_path(image(dataset, 20)), dataset.label_path(near))

    summary = split_dataset(dataset, seed=3)
    splits = dataset.read_splits()
    where = {dataset.relative(p): s for s, members in splits.items() for p in members}
    assert len({where[rel] for rel in group}) == 1
    assert where[dataset.relative(near)] == where[dataset.relative(image(dataset, 20))]
    for split in ("train", "val", "test"):
        present = {k for p in splits[split] for k in image_classes(dataset, p)}
        assert {"ivory", "pangolin_scales", "tiger_parts", "live_reptile"} <= present, split
    assert sum(len(v) for v in splits.values()) == 49
    before = {s: [p.name for p in m] for s, m in splits.items()}
    split_dataset(dataset, seed=3)
    assert {s: [p.name for p in m] for s, m in dataset.read_splits().items()} == before
    assert summary.counts["train"]["images"] > summary.counts["test"]["images"]


def test_holdout_source_stays_out_of_train_val_test(dataset):
    split_dataset(dataset, holdout_sources=("negatives",))
    splits = dataset.read_splits()
    assert len(splits["holdout"]) == 8
    assert not any("negatives" in str(p) for s in ("train", "val", "test") for p in splits[s])
    assert "holdout" in dataset.data_yaml.read_text()
