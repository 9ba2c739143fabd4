"""The image-level label table of ../shared/data: every photo, its classes, its source and group.

The detector can only use boxes; this table is every *image-level* label we have (README of
../shared). Each row names its `source` (the top folder) and `group` (the sub-source a photo
came from: a repository, a shop, a museum department, a product group), so that evaluation can
hold whole sources out, not just photos. `labels` are taxonomy labels; an empty tuple is a
negative. Look-alikes (museum bone and horn, amphibians, other animals, leather, carvings) are
negatives on purpose, and `kind` says what they are so the evaluation can report them apart.

Taxonomy reminders: whole pangolins count as `pangolin_scales`, whole tigers as `tiger_parts`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from server.core.taxonomy import LABELS, by_id
from server.core.yolo_files import is_image, read_labels


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    source: str
    """Top folder of ../shared/data, e.g. `reptiles-more`."""
    group: str
    """Sub-source, for held-out-source evaluation, e.g. `reptiles-more/lloydlegaspi`."""
    labels: tuple[str, ...]
    """Taxonomy labels present; empty for a negative."""
    kind: str
    """What the photo shows, e.g. `snake`, `bone look-alike`, `products/e_toys`."""

    def __post_init__(self) -> None:
        unknown = [label for label in self.labels if label not in LABELS]
        if unknown:
            raise ValueError(f"{self.path}: labels {unknown} are not in the taxonomy ({', '.join(LABELS)})")


def shared_data(shared: Path | str | None = None) -> Path:
    """../shared/data, or `$WILDSCREEN_SHARED/data`; never copied into the repository."""
    root = Path(shared if shared is not None else os.environ.get("WILDSCREEN_SHARED", "../shared"))
    return root / "data" if (root / "data").is_dir() else root


def image_level_table(data: Path) -> list[LabelledImage]:
    """Every image-level label under `data` (../shared/data), in a stable order; absent folders are skipped."""
    rows: list[LabelledImage] = []
    for folder, reader in _READERS.items():
        if (data / folder).is_dir():
            rows.extend(reader(data / folder))
    return rows


def _images(folder: Path) -> Iterator[Path]:
    yield from sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p))


def _repository(path: Path) -> str:
    """`owner__repo__file.jpg` (or `owner+repo__file.jpg`) -> `owner` / `owner+repo`: the upstream source."""
    head = path.name.split("__")[0]
    return head if head != path.name else "unknown"


def _met_ivory(folder: Path) -> Iterator[LabelledImage]:
    with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            note = row["material_note"]
            labels = ("ivory",) if row["class"] == "ivory" else ()
            kind = {"bone (look-alike)": "bone look-alike", "other material (look-alike)": "horn/tooth look-alike"}.get(
                note, "ivory" if labels else "museum object")
            group = f"met-ivory/{row['department'] or 'unknown'}"
            yield LabelledImage(folder / row["file"], "met-ivory", group, labels, kind)


def _wildscan(folder: Path) -> Iterator[LabelledImage]:
    with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            cls, kind = row["class"], row["type"].lower()
            labels = () if cls == "none" else (cls,)
            if cls in ("pangolin_scales", "tiger_parts"):
                kind = "live " + cls.split("_")[0] if kind == "mammal" else cls.replace("_", " ")
            elif labels:
                kind = cls.replace("_", " ")
            yield LabelledImage(folder / row["file"], "wildscan", f"wildscan/{row['species_id']}", labels, kind)


def _by_subfolder(source: str, labels: tuple[str, ...], group_by_repo: bool, kind_prefix: str = "") \
        -> Callable[[Path], Iterator[LabelledImage]]:
    """Folder-labelled sources: `source/<kind>/...`; group by upstream repository or by kind."""
    def read(folder: Path) -> Iterator[LabelledImage]:
        for path in _images(folder):
            kind = path.relative_to(folder).parts[0] if len(path.relative_to(folder).parts) > 1 else source
            group = f"{source}/{_repository(path)}" if group_by_repo else f"{source}/{kind}"
            yield LabelledImage(path, source, group, labels, kind_prefix + kind)
    return read


def _flat(source: str, labels: tuple[str, ...], kind: str, group_by_repo: bool) \
        -> Callable[[Path], Iterator[LabelledImage]]:
    def read(folder: Path) -> Iterator[LabelledImage]:
        for path in _images(folder):
            group = f"{source}/{_repository(path)}" if group_by_repo else source
            yield LabelledImage(path, source, group, labels, kind)
    return read


def _negatives(folder: Path) -> Iterator[LabelledImage]:
    for path in _images(folder):
        rel = path.relative_to(folder).parts
        if rel[0] == "caltech":
            yield LabelledImage(path, "negatives", f"negatives/caltech/{rel[1]}", (), f"caltech/{rel[1]}")
        else:
            yield LabelledImage(path, "negatives", f"negatives/{rel[0]}/{_repository(path)}", (), rel[0])


def _products(folder: Path) -> Iterator[LabelledImage]:
    for path in _images(folder):
        group = path.relative_to(folder).parts[0]
        yield LabelledImage(path, "products", f"products/{group}/{_repository(path)}", (), f"products/{group}")


def _images_only(source: str, labels: tuple[str, ...], kind: str) -> Callable[[Path], Iterator[LabelledImage]]:
    """YOLO-layout sources (`images/<split>/...`): the boxes do not matter here, the image label does."""
    def read(folder: Path) -> Iterator[LabelledImage]:
        for path in _images(folder / "images"):
            yield LabelledImage(path, source, source, labels, kind)
    return read


_READERS: dict[str, Callable[[Path], Iterator[LabelledImage]]] = {
    "met-ivory": _met_ivory,
    "wildscan": _wildscan,
    "reptiles": _by_subfolder("reptiles", ("live_reptile",), group_by_repo=False),
    "reptiles-more": _by_subfolder("reptiles-more", ("live_reptile",), group_by_repo=True),
    "snakes-boxed": _images_only("snakes-boxed", ("live_reptile",), "snake"),
    "tiger-video": _images_only("tiger-video", ("tiger_parts",), "live tiger"),
    "pangolins": _flat("pangolins", ("pangolin_scales",), "live pangolin", group_by_repo=True),
    "products": _products,
    "negatives": _negatives,
    "amphibians": _by_subfolder("amphibians", (), group_by_repo=False, kind_prefix="amphibian/"),
    "animals": _by_subfolder("animals", (), group_by_repo=True, kind_prefix="animal/"),
}


def review_export_table(export: Path) -> list[LabelledImage]:
    """The decided items of a `wildscreen-review export` folder as image-level labels: a confirmed or
    fixed item is labelled with the classes of its final boxes, a rejected one is a negative (its
    kind says why it was rejected, e.g. `rejected/not_wildlife`). The listing is the group, so a
    listing never straddles roles; the source is `review/<export folder>`."""
    export = Path(export)
    groups = export / "groups.csv"
    if not groups.is_file():
        raise FileNotFoundError(f"{export} is not a review export: no groups.csv (wildscreen-review export OUT writes one)")
    rows = []
    with open(groups, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            image = export / "images" / r["file"]
            boxes = read_labels((export / "labels" / r["file"]).with_suffix(".txt"))
            labels = tuple(sorted({by_id(b.class_id).label for b in boxes})) if r["decision"] != "reject" else ()
            kind = f"rejected/{r.get('reason') or 'no reason'}" if r["decision"] == "reject" else f"reviewed/{r['decision']}"
            rows.append(LabelledImage(image, f"review/{export.name}", f"review/{r['group']}", labels, kind))
    return rows


TABLE_FIELDS = ("path", "source", "group", "labels", "kind")


def write_table(rows: list[LabelledImage], path: Path) -> None:
    """CSV with `labels` joined by `;` (empty for negatives); paths as given (absolute or relative)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(TABLE_FIELDS)
        for r in rows:
            writer.writerow([str(r.path), r.source, r.group, ";".join(r.labels), r.kind])
    os.replace(tmp, path)


def read_table(path: Path) -> list[LabelledImage]:
    """A table written by `write_table`, or any CSV with the same columns (e.g. a reviewer export)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(TABLE_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {', '.join(TABLE_FIELDS)}")
        return [LabelledImage(Path(r["path"]), r["source"], r["group"],
                              tuple(x for x in r["labels"].split(";") if x), r["kind"]) for r in reader]
