"""Synthetic labelled images for the tests: one bright, textured shape per class on a noisy background.

Simple enough that a YOLO learns them in a minute on a CPU, so tests can check real geometry
(where boxes come back) with a real trained model, and exercise the training pipeline end to end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# class id -> BGR colour of its shape; distinct hues so a tiny model separates them quickly.
SHAPE_COLOURS = {0: (235, 245, 250), 1: (40, 90, 160), 2: (0, 140, 255), 3: (60, 200, 60)}


@dataclass(frozen=True)
class Placed:
    class_id: int
    xyxy: tuple[int, int, int, int]


def draw_object(image: np.ndarray, class_id: int, xyxy: tuple[int, int, int, int]) -> None:
    x1, y1, x2, y2 = xyxy
    colour = SHAPE_COLOURS[class_id]
    if class_id == 0:
        cv2.ellipse(image, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2), 0, 0, 360, colour, -1)
    else:
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
    if class_id == 2:  # stripes
        for x in range(x1, x2, max(3, (x2 - x1) // 6)):
            cv2.line(image, (x, y1), (x + (x2 - x1) // 5, y2 - 1), (10, 10, 10), max(1, (x2 - x1) // 20))
    if class_id == 1:  # scales
        for y in range(y1, y2, max(3, (y2 - y1) // 5)):
            cv2.line(image, (x1, y), (x2 - 1, y), (20, 50, 90), 1)


def make_image(rng: np.random.Generator, width: int, height: int, classes: list[int]) -> tuple[np.ndarray, list[Placed]]:
    """A noisy grey background with one shape per entry of `classes`, placed without overlap where possible."""
    image = rng.normal(100, 20, (height, width, 3)).clip(0, 255).astype(np.uint8)
    image = cv2.GaussianBlur(image, (3, 3), 0)
    placed: list[Placed] = []
    for class_id in classes:
        for _ in range(20):
            w = int(rng.uniform(0.25, 0.5) * width)
            h = int(rng.uniform(0.25, 0.5) * height)
            x1 = int(rng.uniform(0, width - w))
            y1 = int(rng.uniform(0, height - h))
            box = (x1, y1, x1 + w, y1 + h)
            if all(_iou(box, p.xyxy) == 0 for p in placed):
                break
        draw_object(image, class_id, box)
        placed.append(Placed(class_id, box))
    return image, placed


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def yolo_lines(placed: list[Placed], width: int, height: int) -> list[str]:
    lines = []
    for p in placed:
        x1, y1, x2, y2 = p.xyxy
        lines.append(
            f"{p.class_id} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
        )
    return lines


def write_yolo_dataset(root: Path, counts: dict[str, int], size: int = 128, seed: int = 0,
                       names: dict[int, str] | None = None, stray_field: bool = False) -> Path:
    """A YOLO export under `root`: images/<split>, labels/<split>, data.yaml (names default to the
    taxonomy). With `stray_field`, label lines carry a sixth field, as some exports do."""
    from server.core.taxonomy import NAMES

    names = names or NAMES
    for split, count in counts.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i, (image, placed) in enumerate(generate(count, size, seed + sum(map(ord, split)))):
            stem = f"{split}_{i:04d}"
            cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), image)
            lines = yolo_lines(placed, image.shape[1], image.shape[0])
            if stray_field:
                lines = [f"{line} {stem}.jpg" for line in lines]
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines))
    lines = [f"path: {root.resolve()}"] + [f"{s}: images/{s}" for s in counts] + ["names:"]
    lines += [f"  {k}: {v}" for k, v in names.items()]
    data = root / "data.yaml"
    data.write_text("\n".join(lines) + "\n")
    return data

def generate(count: int, size: int = 128, seed: int = 0, negatives: int = 0):
    """(image, placed) pairs; the first `negatives` have no objects."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        classes = [] if i < negatives else ([i % 4] if i % 5 else [i % 4, (i + 1) % 4])
        yield make_image(rng, int(size * rng.uniform(0.8, 1.25)), size, classes)


def write_coco_export(root: Path, count: int, names: dict[int, str], seed: int = 1, size: int = 96) -> Path:
    """A COCO export: images/ and annotations.json with categories named by `names` (class id -> name)."""
    import json

    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, (image, placed) in enumerate(generate(count, size, seed)):
        name = f"coco_{i:03d}.jpg"
        cv2.imwrite(str(root / "images" / name), image)
        images.append({"id": i + 1, "file_name": name, "width": image.shape[1], "height": image.shape[0]})
        for p in placed:
            x1, y1, x2, y2 = p.xyxy
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": p.class_id + 10,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": k + 10, "name": v} for k, v in names.items()]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def write_voc_export(root: Path, count: int, names: dict[int, str], seed: int = 2, size: int = 96) -> Path:
    """A Pascal VOC export: JPEGImages/ and Annotations/*.xml."""
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    for i, (image, placed) in enumerate(generate(count, size, seed)):
        name = f"voc_{i:03d}.jpg"
        cv2.imwrite(str(root / "JPEGImages" / name), image)
        objects = "".join(
            f"<object><name>{names[p.class_id]}</name><bndbox><xmin>{p.xyxy[0]}</xmin><ymin>{p.xyxy[1]}</ymin>"
            f"<xmax>{p.xyxy[2]}</xmax><ymax>{p.xyxy[3]}</ymax></bndbox></object>"
            for p in placed
        )
        xml = (f"<annotation><filename>{name}</filename><size><width>{image.shape[1]}</width>"
               f"<height>{image.shape[0]}</height><depth>3</depth></size>{objects}</annotation>")
        (root / "Annotations" / f"voc_{i:03d}.xml").write_text(xml)
    return root


def write_negatives(root: Path, count: int, seed: int = 3, size: int = 96) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, (image, _) in enumerate(generate(count, size, seed, negatives=count)):
        cv2.imwrite(str(root / f"neg_{i:03d}.jpg"), image)
    return root
