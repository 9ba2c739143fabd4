"""`training composite`: boxes written from the paste match where the object landed (by construction:
a red object cut from a white background, pasted onto plain green), and only train images are used."""

import cv2
import numpy as np
import pytest

from server.core.yolo_files import read_labels
from training.cli import main
from training.labelling.composite import COMPOSITES, CompositeOptions, composite_into
from training.formats import import_source
from training.layout import Dataset
from training.mapping import ClassMapping


def write_folder(root, count, draw):
    root.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(root / f"im_{i:02d}.png"), draw(i))
    return root


def museum(i):
    image = np.full((120, 160, 3), 250, np.uint8)
    cv2.ellipse(image, (80, 60), (30 + i, 18), 0, 0, 360, (0, 0, 220), -1)
    return image


def shelf(i):
    return np.full((200, 240, 3), (40, 160 + i, 40), np.uint8)


@pytest.fixture()
def dataset(tmp_path) -> Dataset:
    ds = Dataset(tmp_path / "ds")
    import_source("negatives", write_folder(tmp_path / "museum", 4, museum), ds, "met-ivory", ClassMapping(), image_label="ivory")
    import_source("negatives", write_folder(tmp_path / "shop", 3, shelf), ds, "products", ClassMapping())
    import_source("negatives", write_folder(tmp_path / "other", 2, shelf), ds, "products-heldout", ClassMapping())
    images = ds.images()
    held = [p for p in images if "products-heldout" in p.as_posix()]
    val = [p for p in images if p.name == "im_03.png" and "met-ivory" in p.as_posix()]
    ds.write_splits({"train": [p for p in images if p not in held + val], "val": val, "holdout": held})
    return ds


def red_box(image):
    b, g, r = cv2.split(image.astype(int))
    ys, xs = np.nonzero((r > 120) & (g < 110) & (b < 110))
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_composites_have_boxes_where_the_object_landed_and_go_to_train_only(dataset, tmp_path):
    record = composite_into(dataset, CompositeOptions(count=8, two_objects=0.0, seed=1), tmp_path / "sheets")
    assert record["composites"] == 8 and record["cutouts"] == 3 and record["backgrounds"] == 3
    assert (tmp_path / "sheets" / "contact_composites.png").exists()
    meta = dataset.read_meta()
    splits = dataset.read_splits()
    made = [p for p in splits["train"] if meta[dataset.relative(p)].source == COMPOSITES]
    assert len(made) == 8
    assert not any(meta[dataset.relative(p)].source == COMPOSITES for s in ("val", "test", "holdout") for p in splits[s])
    for p in made:
        origin = meta[dataset.relative(p)].origin
        assert "products-heldout" not in origin and "im_03" not in origin  # held-out background, val object
        image = cv2.imread(str(p))
        (box,) = read_labels(dataset.label_path(p))
        assert box.class_id == 0  # ivory
        h, w = image.shape[:2]
        assert iou(box.xyxy(w, h), red_box(image)) > 0.8


def test_composite_cli_refuses_a_dataset_without_objects(dataset, tmp_path):
    with pytest.raises(ValueError, match="objects"):
        main(["composite", "--dataset", str(dataset.root), "--objects-source", "nothing-here", "--count", "2"])
