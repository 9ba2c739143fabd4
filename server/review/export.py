"""`wildscreen-review export OUT`: the decided items as an Ultralytics dataset.

Confirmed and fixed boxes become labels, rejected items (false flags) become background images
with empty label files: hard negatives. Images lie in one folder per listing
(images/<listing>/...), so `wildscreen-train import yolo OUT --group folder` keeps a listing in
one split; groups.csv says the same for `--group csv:OUT/groups.csv`.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
from collections import Counter
from pathlib import Path

import yaml

from server.core.taxonomy import NAMES
from server.review.store import ReviewStore

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def listing_folder(listing_id: str) -> str:
    """A folder name for a listing id: readable, safe on every file system, and unique per id."""
    readable = _UNSAFE.sub("_", listing_id).strip("._")[:60] or "listing"
    return f"{readable}-{hashlib.sha256(listing_id.encode()).hexdigest()[:8]}"


def yolo_line(box: dict, width: int, height: int) -> str:
    cx = (box["x_min"] + box["x_max"]) / 2 / width
    cy = (box["y_min"] + box["y_max"]) / 2 / height
    w = (box["x_max"] - box["x_min"]) / width
    h = (box["y_max"] - box["y_min"]) / height
    return f"{box['class_id']} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def export_dataset(store: ReviewStore, out: Path) -> Counter:
    """Write the decided items under `out`; returns counts by decision and of boxes."""
    out = Path(out)
    counts: Counter = Counter()
    rows = []
    for item in store.decided():
        folder = listing_folder(item.listing_id)
        name = f"{item.id:08d}-{item.image_sha256[:12]}{Path(item.image_file).suffix}"
        image = out / "images" / folder / name
        label = (out / "labels" / folder / name).with_suffix(".txt")
        image.parent.mkdir(parents=True, exist_ok=True)
        label.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.images_dir / item.image_file, image)
        boxes = item.final_boxes or []
        label.write_text("".join(yolo_line(b, item.width, item.height) + "\n" for b in boxes))
        counts[item.decision] += 1
        counts["boxes"] += len(boxes)
        rows.append({"file": f"{folder}/{name}", "group": item.listing_id, "item": item.id, "decision": item.decision,
                     "reviewer": item.decided_by, "model_version": item.model_version, "verdict": item.verdict})
    (out / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images", "val": "images", "names": dict(NAMES)}, sort_keys=False))
    with open(out / "groups.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "group", "item", "decision", "reviewer", "model_version", "verdict"])
        writer.writeheader()
        writer.writerows(rows)
    return counts
