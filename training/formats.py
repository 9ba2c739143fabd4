"""The import formats: a labelled export read into our dataset layout (`training import`, `mine`, recipes).

Formats: YOLO folders (images/ + labels/, names from data.yaml or classes.txt), COCO JSON,
Pascal VOC XML, and a folder of unlabelled negatives (background images), in ONE table (`FORMATS`)
that the CLI's choices read. Every import maps the source's class names through a ClassMapping and
refuses unmapped names before writing anything.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from server.core.decoding import probe
from server.core.yolo_files import DATASET_SUFFIXES, LabelBox, write_labels
from training.layout import Dataset, MetaRow, image_files_under
from training.mapping import ClassMapping


@dataclass
class ImportSummary:
    source: str
    images: int = 0
    background: int = 0
    boxes: Counter = field(default_factory=Counter)
    dropped_boxes: Counter = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"imported {self.images} images from {self.source} ({self.background} background)"]
        out += [f"  {label}: {n} boxes" for label, n in sorted(self.boxes.items())]
        out += [f"  dropped {n} boxes of {name} (mapped to background)" for name, n in sorted(self.dropped_boxes.items())]
        out += [f"  skipped {s}" for s in self.skipped]
        return out


@dataclass(frozen=True)
class SourceImage:
    """One image of a source and its boxes as (source class name, x1, y1, x2, y2 in pixels), or
    normalised boxes when `normalized` is set (YOLO)."""

    path: Path
    relative: Path
    boxes: list[tuple[str, float, float, float, float]]
    normalized: bool = False


def group_rule(spec: str) -> Callable[[Path], str]:
    """file (each image alone), folder (parent folder), regex:PATTERN (first group of a match on
    the relative path), or csv:PATH (columns file,group)."""
    if spec == "file":
        return lambda rel: rel.as_posix()
    if spec == "folder":
        return lambda rel: rel.parent.as_posix()
    if spec.startswith("regex:"):
        pattern = re.compile(spec[len("regex:"):])

        def by_regex(rel: Path) -> str:
            m = pattern.search(rel.as_posix())
            return (m.group(1) if m.groups() else m.group(0)) if m else rel.as_posix()

        return by_regex
    if spec.startswith("csv:"):
        import csv

        with open(spec[len("csv:"):], newline="") as f:
            table = {row["file"]: row["group"] for row in csv.DictReader(f)}
        return lambda rel: table.get(rel.as_posix(), table.get(rel.name, rel.as_posix()))
    raise ValueError(f"group rule {spec!r} is not file, folder, regex:PATTERN or csv:PATH")


def _write(
    dataset: Dataset, source: str, items: list[SourceImage], mapping: ClassMapping, group_of: Callable[[Path], str],
    link: bool, image_label: str = "",
) -> ImportSummary:
    mapping.check_covers({b[0] for item in items for b in item.boxes}, source)
    summary = ImportSummary(source)
    meta = dataset.read_meta()
    for item in tqdm(items, desc=f"import {source}", unit="img"):
        try:
            header = probe(item.path.read_bytes())
        except Exception as exc:  # unreadable files are reported, not imported
            summary.skipped.append(f"{item.relative}: {exc}")
            continue
        target = dataset.root / "images" / source / item.relative
        if target.suffix.lower() not in DATASET_SUFFIXES:
            target = target.with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        if link:
            target.symlink_to(item.path.resolve())
        else:
            shutil.copyfile(item.path, target)
        boxes = []
        for name, a, b, c, d in item.boxes:
            class_id = mapping.class_id(name)
            if class_id is None:
                summary.dropped_boxes[name] += 1
                continue
            if item.normalized:
                boxes.append(LabelBox(class_id, a, b, c, d))
            else:
                boxes.append(LabelBox.from_xyxy(class_id, (a, b, c, d), header.width, header.height))
            summary.boxes[mapping.target(name)] += 1
        write_labels(dataset.label_path(target), boxes)
        rel = dataset.relative(target)
        meta[rel] = MetaRow(rel, source, f"{source}/{group_of(item.relative)}", str(item.path), image_label)
        summary.images += 1
        summary.background += not boxes
    dataset.write_meta(meta)
    dataset.write_data_yaml()
    return summary


def yolo_names(src: Path) -> dict[int, str]:
    for candidate in (src / "data.yaml", src / "dataset.yaml"):
        if candidate.exists():
            names = yaml.safe_load(candidate.read_text()).get("names", {})
            return dict(enumerate(names)) if isinstance(names, list) else {int(k): str(v) for k, v in names.items()}
    classes = src / "classes.txt"
    if classes.exists():
        return dict(enumerate(line.strip() for line in classes.read_text().splitlines() if line.strip()))
    raise FileNotFoundError(f"{src}: no data.yaml, dataset.yaml or classes.txt to name the classes")


def read_yolo(src: Path, names: dict[int, str] | None = None) -> list[SourceImage]:
    """images/**/x.jpg with labels/**/x.txt. Extra fields after the fifth (a stray file name in some
    exports) are ignored; an unknown class id is an error."""
    names = names or yolo_names(src)
    items = []
    for image in image_files_under(src / "images"):
        rel = image.relative_to(src / "images")
        label = (src / "labels" / rel).with_suffix(".txt")
        boxes = []
        if label.exists():
            for n, line in enumerate(label.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                class_index = int(fields[0])
                if class_index not in names:
                    raise ValueError(f"{label}:{n}: class id {class_index} is not in the source's names {names}")
                boxes.append((names[class_index], *(float(v) for v in fields[1:5])))
        items.append(SourceImage(image, rel, boxes, normalized=True))
    return items


def read_coco(annotations: Path, images_dir: Path) -> list[SourceImage]:
    coco = json.loads(Path(annotations).read_text())
    categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
    boxes_by_image: dict[int, list] = {}
    for a in coco.get("annotations", []):
        x, y, w, h = a["bbox"]
        boxes_by_image.setdefault(a["image_id"], []).append((categories[a["category_id"]], x, y, x + w, y + h))
    return [
        SourceImage(images_dir / im["file_name"], Path(im["file_name"]), boxes_by_image.get(im["id"], []))
        for im in coco.get("images", [])
    ]


def read_voc(folder: Path) -> list[SourceImage]:
    items = []
    for xml_path in sorted(folder.rglob("*.xml")):
        root = ET.parse(xml_path).getroot()
        filename = root.findtext("filename") or xml_path.with_suffix(".jpg").name
        candidates = [xml_path.with_name(filename), folder / "JPEGImages" / filename, xml_path.parent.parent / "JPEGImages" / filename]
        image = next((c for c in candidates if c.exists()), candidates[0])
        boxes = []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            boxes.append((obj.findtext("name").strip(), *coords))
        items.append(SourceImage(image, Path(filename), boxes))
    return items


def read_negatives(folder: Path) -> list[SourceImage]:
    return [SourceImage(p, p.relative_to(folder), []) for p in image_files_under(folder)]


@dataclass(frozen=True)
class Format:
    """How to read one kind of source: `read(src, images_dir, names)` gives its images and boxes."""

    name: str
    src: str
    """What `src` is, for the CLI's help."""
    read: Callable[[Path, Path | None, dict[int, str] | None], list[SourceImage]]


FORMATS = {f.name: f for f in (
    Format("yolo", "YOLO folder", lambda src, _, names: read_yolo(src, names)),
    Format("coco", "COCO json", lambda src, images_dir, _: read_coco(src, images_dir or src.parent / "images")),
    Format("voc", "VOC folder", lambda src, _, __: read_voc(src)),
    Format("negatives", "folder of negatives", lambda src, _, __: read_negatives(src)),
)}
"""The ONE table of import formats: `training import`'s choices and `import_source` read it."""


def import_source(
    fmt: str, src: Path, dataset: Dataset, source: str, mapping: ClassMapping, group: str = "file",
    images_dir: Path | None = None, link: bool = False, names: dict[int, str] | None = None, image_label: str = "",
) -> ImportSummary:
    """Import `src` in a format of FORMATS into `dataset` as `source`. `names` gives a YOLO source's
    class names where it has no data.yaml; `image_label` records the image-level class every image
    of this source shows (a folder-labelled source), boxed or not."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    if image_label and image_label != "background":
        from server.core.taxonomy import by_label

        by_label(image_label)
    items = FORMATS[fmt].read(Path(src), images_dir, names)
    return _write(dataset, source, items, mapping, group_rule(group), link, image_label)
