"""The files of an Ultralytics (YOLO) dataset, written the same way by training and the review export.

A label file holds one line per box, `class cx cy w h`, the centre and size as fractions of the
image; an empty file is a background image. Which files count as images is decided here too, so
that a folder means the same set of photos to the trainer, the backfill and the review export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
"""Every suffix the decoder opens (server/core/decoding.py), lower case; a tuple so that it also
serves `str.endswith`."""
DATASET_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s != ".gif")
"""The images a training dataset holds: Ultralytics' loader drops a .gif from its lists, so
training never counts one as a dataset image (the importer stores one under .jpg)."""


def is_image(path: Path | str, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> bool:
    """Whether `path`'s suffix (any case) names an image."""
    return Path(path).suffix.lower() in suffixes


@dataclass(frozen=True)
class LabelBox:
    """One line of a label file: a class id and a box normalised to the image."""

    class_id: int
    cx: float
    cy: float
    w: float
    h: float

    def line(self) -> str:
        return f"{self.class_id} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"

    def xyxy(self, width: int, height: int) -> tuple[float, float, float, float]:
        return (
            (self.cx - self.w / 2) * width,
            (self.cy - self.h / 2) * height,
            (self.cx + self.w / 2) * width,
            (self.cy + self.h / 2) * height,
        )

    @classmethod
    def from_xyxy(cls, class_id: int, xyxy: Sequence[float], width: int, height: int) -> LabelBox:
        """From pixel corners (in any order), clipped to the image."""
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        x1, x2 = max(0.0, min(x1, x2)), min(float(width), max(x1, x2))
        y1, y2 = max(0.0, min(y1, y2)), min(float(height), max(y1, y2))
        return cls(class_id, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)


def read_labels(path: Path) -> list[LabelBox]:
    """Parse a label file, tolerating a stray extra field (as in the tiger frames); raise ValueError otherwise."""
    boxes: list[LabelBox] = []
    if not path.exists():
        return boxes
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 5:
            raise ValueError(f"{path}:{n}: {len(fields)} fields, expected 5")
        try:
            boxes.append(LabelBox(int(fields[0]), *(float(v) for v in fields[1:5])))
        except ValueError:
            raise ValueError(f"{path}:{n}: not numbers: {line!r}") from None
    return boxes


def write_labels(path: Path, boxes: Sequence[LabelBox]) -> None:
    """The label file for `boxes` (an empty one for none: a background image), parents made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(b.line() + "\n" for b in boxes))
