"""A tiny features run: table.csv, tiny photos (for pHash), a lite0-shaped cache of synthetic features."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from server.core.taxonomy import LABELS
from training.imagelevel.cache import FeatureCache

DIM = 1280
# (source, group, kind, labels, photos): train, calibration and holdout groups of every class.
GROUPS = [
    ("met-ivory", "met-ivory/Asian Art", "ivory", "ivory", 12),
    ("met-ivory", "met-ivory/Asian Art", "museum object", "", 12),
    ("met-ivory", "met-ivory/Medieval Art", "ivory", "ivory", 12),
    ("met-ivory", "met-ivory/Medieval Art", "museum object", "", 12),
    ("met-ivory", "met-ivory/Islamic Art", "ivory", "ivory", 6),
    ("met-ivory", "met-ivory/Islamic Art", "bone look-alike", "", 4),
    ("reptiles", "reptiles/Gecko", "Gecko", "live_reptile", 12),
    ("reptiles", "reptiles/Chameleon", "Chameleon", "live_reptile", 6),
    ("tiger-video", "tiger-video", "live tiger", "tiger_parts", 12),
    ("pangolins", "pangolins/a+one", "live pangolin", "pangolin_scales", 6),
    ("pangolins", "pangolins/b+two", "live pangolin", "pangolin_scales", 6),
    ("pangolins", "pangolins/c+three", "live pangolin", "pangolin_scales", 6),
    ("products", "products/e_toys/kulpreetsingh90", "products/e_toys", "", 12),  # a v2 calibration shop
    ("products", "products/e_toys/GaganJadhav10", "products/e_toys", "", 8),  # a v2 holdout shop
    ("products", "products/e_toys/other", "products/e_toys", "", 12),
    ("amphibians", "amphibians/Toad", "amphibian/Toad", "", 12),
]
PRODUCT_FILES = {"kulpreetsingh90": "kulpreetsingh90__Toyland", "GaganJadhav10": "GaganJadhav10__toyopia",
                 "other": "someone__shop"}


def _photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))


def features_for(labels: str, seed: int) -> np.ndarray:
    """Separable: a class's photos are shifted along that class's own feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, DIM).astype(np.float32)
    for label in filter(None, labels.split(";")):
        x[LABELS.index(label)] += 6.0
    return x


@pytest.fixture
def tiny_run(tmp_path) -> Path:
    run = tmp_path / "run"
    photos = tmp_path / "photos"
    rows, keys, whole = [], [], []
    n = 0
    for source, group, kind, labels, count in GROUPS:
        for i in range(count):
            n += 1
            stem = f"{PRODUCT_FILES[group.rsplit('/', 1)[1]]}__{i}" if source == "products" else \
                (f"{group.split('/')[1]}__{i}" if source == "pangolins" else f"img{n}")
            path = photos / source / f"{stem}.png"
            _photo(path, n)
            key = f"{n:064x}"
            rows.append([str(path), key, source, group, labels, kind])
            keys.append(key)
            whole.append(features_for(labels, n))
    run.mkdir()
    with open(run / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "sha256", "source", "group", "labels", "kind"])
        w.writerows(rows)
    meta = {"format": 1, "backbone": "lite0", "timm_name": "tf_efficientnet_lite0", "input_size": 224,
            "weights_sha256": "ab" * 32, "feature_dim": DIM, "tile_grids": [2], "tile_overlap": 0.25, "tile_count": 4,
            "tile_boxes": [], "dtype": "float16"}
    cache = FeatureCache.open(run / "lite0", meta)
    whole_arr = np.stack(whole)
    tiles = np.repeat(whole_arr[:, None, :], 4, axis=1) * 0.5
    cache.write_shard(keys, whole_arr, tiles)
    detector = np.zeros((len(keys), len(LABELS)), np.float32)
    for i, (_, _, _, _, labels, _) in enumerate(rows):
        for label in filter(None, labels.split(";")):
            detector[i, LABELS.index(label)] = 0.8
    np.savez(run / "detector-v2.npz", sha256=np.array(keys), scores=detector, version=np.array("v2"),
             model_sha256=np.array("x"), floor=np.array("0.005"))
    (run / "rows.json").write_text(json.dumps(len(rows)))
    return run
