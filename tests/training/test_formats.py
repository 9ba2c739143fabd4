import json

import pytest

from server.core.yolo_files import read_labels
from tests.support.synthetic import write_coco_export, write_negatives, write_voc_export, write_yolo_dataset
from training.formats import import_source
from training.layout import Dataset
from training.mapping import ClassMapping, MappingError

SOURCE_NAMES = {0: "tusk", 1: "scales", 2: "tiger", 3: "snake"}
MAPPING = {"tusk": "ivory", "scales": "pangolin_scales", "tiger": "tiger_parts", "snake": "live_reptile"}


@pytest.fixture()
def mapping_file(tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in MAPPING.items()))
    return path


def test_yolo_export_with_stray_sixth_field(tmp_path, mapping_file):
    write_yolo_dataset(tmp_path / "src", {"train": 6, "val": 4}, size=64, names=SOURCE_NAMES, stray_field=True)
    dataset = Dataset(tmp_path / "ds")
    summary = import_source("yolo", tmp_path / "src", dataset, "yolo-src", ClassMapping.load(mapping_file), group="folder")
    assert summary.images == 10 and sum(summary.boxes.values()) >= 10 and not summary.skipped
    image = dataset.root / "images" / "yolo-src" / "train" / "train_0001.jpg"
    boxes = read_labels(dataset.label_path(image))
    assert boxes and all(0 <= b.class_id < 4 for b in boxes)
    assert len(dataset.label_path(image).read_text().split("\n")[0].split()) == 5  # the stray field is gone
    meta = dataset.read_meta()
    assert meta["images/yolo-src/train/train_0001.jpg"].group == "yolo-src/train"


def test_coco_and_voc_boxes_land_where_the_yolo_ones_would(tmp_path, mapping_file):
    mapping = ClassMapping.load(mapping_file)
    dataset = Dataset(tmp_path / "ds")
    coco = write_coco_export(tmp_path / "coco", 5, SOURCE_NAMES)
    voc = write_voc_export(tmp_path / "voc", 5, SOURCE_NAMES)
    assert import_source("coco", coco, dataset, "coco", mapping).images == 5
    assert import_source("voc", voc, dataset, "voc", mapping).images == 5
    annotations = json.loads(coco.read_text())
    first = annotations["images"][0]
    x, y, w, h = next(a["bbox"] for a in annotations["annotations"] if a["image_id"] == first["id"])
    box = read_labels(dataset.root / "labels" / "coco" / "coco_000.txt")[0]
    assert box.xyxy(first["width"], first["height"]) == pytest.approx((x, y, x + w, y + h), abs=0.01)
    assert len(list((dataset.root / "labels" / "voc").glob("*.txt"))) == 5


def test_negatives_become_background_images(tmp_path):
    dataset = Dataset(tmp_path / "ds")
    summary = import_source("negatives", write_negatives(tmp_path / "neg", 4), dataset, "negatives", ClassMapping())
    assert summary.images == summary.background == 4
    assert all(p.read_text() == "" for p in (dataset.root / "labels" / "negatives").glob("*.txt"))


def test_unmapped_names_are_refused_all_at_once_before_writing(tmp_path):
    write_yolo_dataset(tmp_path / "src", {"train": 6}, size=64, names=SOURCE_NAMES)
    dataset = Dataset(tmp_path / "ds")
    with pytest.raises(MappingError) as err:
        import_source("yolo", tmp_path / "src", dataset, "src", ClassMapping({"tusk": "ivory"}))
    assert "scales, snake, tiger" in str(err.value)
    assert not (tmp_path / "ds" / "images").exists()


def test_background_mapping_drops_boxes(tmp_path):
    write_yolo_dataset(tmp_path / "src", {"train": 5}, size=64, names=SOURCE_NAMES)
    mapping = ClassMapping({"tusk": "ivory", "scales": "background", "tiger": "background", "snake": "background"})
    summary = import_source("yolo", tmp_path / "src", Dataset(tmp_path / "ds"), "src", mapping)
    assert set(summary.boxes) == {"ivory"} and summary.dropped_boxes


def test_mapping_targets_must_be_taxonomy_labels():
    with pytest.raises(MappingError, match="elephant"):
        ClassMapping({"tusk": "elephant"})


def test_cli_import_refusal_exit_code(tmp_path):
    from training.cli import main

    write_yolo_dataset(tmp_path / "src", {"train": 3}, size=64, names=SOURCE_NAMES)
    assert main(["import", "yolo", str(tmp_path / "src"), "--dataset", str(tmp_path / "ds")]) == 2
