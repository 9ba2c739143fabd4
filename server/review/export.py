"""`wildscreen-review export OUT`: the decided items as an Ultralytics dataset.

Confirmed and fixed boxes become labels, rejected items (false flags) become background images
with empty label files: hard negatives. Images lie in one folder per listing
(images/<listing>/...), so `wildscreen-train import yolo OUT --group folder` keeps a listing in
one split; groups.csv says the same for `--group csv:OUT/groups.csv`, with each reject's reason
(not_wildlife, legal_with_papers, duplicate, other; empty where none was given).
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
from server.core.yolo_files import LabelBox, write_labels
from server.review.store import ReviewStore

FIELDS = ["file", "group", "item", "decision", "reviewer", "model_version", "verdict", "reason"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def listing_folder(listing_id: str) -> str:
    """A folder name for a listing id: readable, safe on every file system, and unique per id."""
    readable = _UNSAFE.sub("_", listing_id).strip("._")[:60] or "listing"
    return f"{readable}-{hashlib.sha256(listing_id.encode()).hexdigest()[:8]}"


def label_box(box: dict, width: int, height: int) -> LabelBox:
    """A stored box (pixel corners) as a label-file line's box."""
    return LabelBox.from_xyxy(box["class_id"], (box["x_min"], box["y_min"], box["x_max"], box["y_max"]), width, height)


def export_dataset(store: ReviewStore, out: Path) -> Counter:
    """Write the decided items under `out`; returns counts by decision and of boxes."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # nothing decided yet is an empty dataset, not a crash
    counts: Counter = Counter()
    rows = []
    for item in store.decided():
        folder = listing_folder(item.listing_id)
        name = f"{item.id:08d}-{item.image_sha256[:12]}{Path(item.image_file).suffix}"
        image = out / "images" / folder / name
        label = (out / "labels" / folder / name).with_suffix(".txt")
        image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.images_dir / item.image_file, image)
        boxes = item.final_boxes or []
        write_labels(label, [label_box(b, item.width, item.height) for b in boxes])
        counts[item.decision] += 1
        counts["boxes"] += len(boxes)
        rows.append({"file": f"{folder}/{name}", "group": item.listing_id, "item": item.id, "decision": item.decision,
                     "reviewer": item.decided_by, "model_version": item.model_version, "verdict": item.verdict,
                     "reason": item.reason or ""})
    (out / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images", "val": "images", "names": dict(NAMES)}, sort_keys=False))
    with open(out / "groups.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return counts
