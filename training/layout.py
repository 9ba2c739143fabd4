"""Our dataset layout: Ultralytics' YOLO format, with the split kept in list files.

    <dataset>/
      images/<source>/...          imported images, any depth
      labels/<source>/...          one .txt per image (Ultralytics swaps /images/ for /labels/)
      meta.csv                     image, source, group, origin: where each image came from
      train.txt val.txt test.txt   image paths (./images/...), written by `split`
      calibration.txt holdout.txt  whole sources held out of all three: to calibrate on, and for out-of-source checks
      data.yaml                    path, train/val/test -> the split lists, names = the taxonomy
      quarantine/<reason>/...      files `check --fix` moved aside

Images never move between splits; a split is a list. An empty label file is a background image:
it teaches the model what not to flag. The label files' lines and which files are images are
server/core/yolo_files.py's (the review export writes the same files).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from server.core.taxonomy import LABELS, NAMES
from server.core.yolo_files import DATASET_SUFFIXES, is_image, read_labels

SPLITS = ("train", "val", "test", "calibration", "holdout")
"""calibration and holdout: whole sources kept out of train/val/test, to calibrate thresholds on and
for the out-of-source check; both optional (no file when empty)."""
HELD_OUT_SPLITS = ("calibration", "holdout")
META_FIELDS = ("image", "source", "group", "origin", "label")
BACKGROUND = "background"
"""What `image_classes` says of an image that shows none of the classes."""


def image_files_under(folder: Path) -> list[Path]:
    """The image files anywhere under `folder`, sorted (so runs see them in the same order)."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image(p, DATASET_SUFFIXES))


def images_in(place: Path) -> list[Path]:
    """The images of a folder (anywhere under it) or of an Ultralytics split list (`train.txt`:
    one path per line, `./` meaning the list's folder), sorted: so a split, not only a folder,
    can feed calibration and checks without copying it."""
    place = Path(place)
    if not place.is_file():
        return image_files_under(place)
    lines = (line.strip() for line in place.read_text().splitlines())
    return sorted(place.parent / line if not Path(line).is_absolute() else Path(line) for line in lines if line)


def link_file(target: Path, source: Path) -> None:
    """A symlink at `target` to `source`, parents made; one already there is kept (builds resume)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(source.resolve())


def link_view(files: list[Path], root: Path, view: Path) -> Path:
    """A folder of symlinks to `files` (their layout under `root` kept): a capped or filtered view
    of a source, without copying it."""
    for f in files:
        link_file(view / f.relative_to(root), f)
    return view


@dataclass(frozen=True)
class MetaRow:
    image: str
    """Path relative to the dataset root, e.g. images/met/ivory_1.jpg."""
    source: str
    group: str
    """Images of one group (listing, seizure, video segment, object) always land in one split."""
    origin: str
    label: str = ""
    """The image-level class from the source (e.g. its folder), when it has one: the truth for
    image-level metrics even where no box could be drawn."""


class Dataset:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def data_yaml(self) -> Path:
        return self.root / "data.yaml"

    @property
    def meta_csv(self) -> Path:
        return self.root / "meta.csv"

    def split_file(self, split: str) -> Path:
        return self.root / f"{split}.txt"

    def label_path(self, image: Path) -> Path:
        """images/<x>/a.jpg -> labels/<x>/a.txt, as Ultralytics maps them."""
        rel = Path(os.path.relpath(os.path.abspath(image), os.path.abspath(self.root / "images")))
        return (self.root / "labels" / rel).with_suffix(".txt")

    def images(self) -> list[Path]:
        base = self.root / "images"
        return image_files_under(base) if base.exists() else []

    def labels(self) -> list[Path]:
        base = self.root / "labels"
        return sorted(base.rglob("*.txt")) if base.exists() else []

    def relative(self, path: Path) -> str:
        """`path` relative to the dataset root, without following symlinks (images may link to ../shared)."""
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(self.root))).as_posix()

    # --- meta.csv -------------------------------------------------------------------------
    def read_meta(self) -> dict[str, MetaRow]:
        if not self.meta_csv.exists():
            return {}
        with open(self.meta_csv, newline="") as f:
            return {row["image"]: MetaRow(**{k: row.get(k) or "" for k in META_FIELDS}) for row in csv.DictReader(f)}

    def write_meta(self, rows: dict[str, MetaRow]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.meta_csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=META_FIELDS)
            writer.writeheader()
            for key in sorted(rows):
                writer.writerow(rows[key].__dict__)

    def group_of(self, image_rel: str, meta: dict[str, MetaRow]) -> str:
        row = meta.get(image_rel)
        return row.group if row and row.group else image_rel

    # --- splits ---------------------------------------------------------------------------
    def read_split(self, split: str) -> list[Path]:
        path = self.split_file(split)
        if not path.exists():
            return []
        return [self.root / line.strip() for line in path.read_text().splitlines() if line.strip()]

    def read_splits(self) -> dict[str, list[Path]]:
        return {s: self.read_split(s) for s in SPLITS}

    def write_splits(self, splits: dict[str, list[Path]]) -> None:
        for split in SPLITS:
            lines = sorted(self.relative(p) for p in splits.get(split, []))
            if split in HELD_OUT_SPLITS and not lines:
                self.split_file(split).unlink(missing_ok=True)
                continue
            self.split_file(split).write_text("".join(f"./{line}\n" for line in lines))
        self.write_data_yaml()

    def write_data_yaml(self) -> Path:
        data = {"path": os.path.abspath(self.root)}
        data.update({s: f"{s}.txt" for s in SPLITS if s not in HELD_OUT_SPLITS or self.split_file(s).exists()})
        data["names"] = dict(NAMES)
        self.data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.data_yaml


def image_classes(dataset: Dataset, image: Path, meta: dict[str, MetaRow] | None = None) -> set[str]:
    """Classes an image shows: from its boxes, and from its image-level label in meta.csv."""
    boxes = read_labels(dataset.label_path(image))
    found = {LABELS[b.class_id] for b in boxes if 0 <= b.class_id < len(LABELS)}
    row = (meta if meta is not None else dataset.read_meta()).get(dataset.relative(image))
    if row is not None and row.label in LABELS:
        found.add(row.label)
    return found or {BACKGROUND}
