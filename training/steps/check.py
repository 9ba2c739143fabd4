"""`training check`: find what would silently poison training, without crashing on any of it.

Errors (exit status 1): unreadable or truncated images, malformed labels (class id out of range,
coordinates outside the image, zero-area boxes), label files without images, images without
label files (they would train as "nothing here"), split entries whose file is gone, and leakage:
exact or near duplicates on both sides of train / val / test.
Warnings: duplicates inside one split, stray extra fields on label lines.

`--fix` moves the offending files to quarantine/<kind>/ (never deletes) and drops them from the
split lists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from server.core.decoding import decode
from server.core.taxonomy import TAXONOMY
from training.layout import SPLITS, Dataset
from training.phash import DEFAULT_MAX_DISTANCE, hash_files, near_duplicate_pairs
from server.settings import HelpFormatter

COORD_TOLERANCE = 1e-3
MIN_BOX_PIXELS = 1.0


@dataclass(frozen=True)
class Finding:
    severity: str
    """"error" or "warning"."""
    kind: str
    path: str
    message: str
    related: tuple[str, ...] = ()


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    images: int = 0
    labels: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def add(self, severity: str, kind: str, path: str, message: str, related: tuple[str, ...] = ()) -> None:
        self.findings.append(Finding(severity, kind, path, message, related))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for f in self.findings:
            out[f"{f.severity}:{f.kind}"] += 1
        return dict(sorted(out.items()))


def _check_label_file(report: CheckReport, rel: str, label: Path, width: int, height: int) -> None:
    for n, line in enumerate(label.read_text(errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {n}"
        if len(fields) < 5:
            report.add("error", "bad_label", rel, f"{where}: {len(fields)} fields, expected 5")
            continue
        if len(fields) > 5:
            report.add("warning", "extra_fields", rel, f"{where}: {len(fields) - 5} extra field(s) ignored by training")
        try:
            class_id = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:5])
        except ValueError:
            report.add("error", "bad_label", rel, f"{where}: not numbers: {line.strip()!r}")
            continue
        if not 0 <= class_id < len(TAXONOMY):
            report.add("error", "bad_label", rel, f"{where}: class id {class_id} outside 0..{len(TAXONOMY) - 1}")
        lo, hi = -COORD_TOLERANCE, 1 + COORD_TOLERANCE
        if not all(lo <= v <= hi for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, w, h)):
            report.add("error", "bad_label", rel, f"{where}: box {cx:.3f} {cy:.3f} {w:.3f} {h:.3f} leaves the image")
        elif w * width < MIN_BOX_PIXELS or h * height < MIN_BOX_PIXELS:
            report.add("error", "bad_label", rel, f"{where}: zero-area box ({w * width:.1f} x {h * height:.1f} px)")


def check_dataset(dataset: Dataset, max_distance: int = DEFAULT_MAX_DISTANCE) -> CheckReport:
    report = CheckReport()
    images = dataset.images()
    report.images = len(images)
    image_labels = {dataset.label_path(p) for p in images}
    for label in dataset.labels():
        report.labels += 1
        if label not in image_labels:
            report.add("error", "orphan_label", dataset.relative(label), "label file without an image")

    readable: list[Path] = []
    digests: dict[str, list[str]] = defaultdict(list)
    for image in tqdm(images, desc="checking images", unit="img"):
        rel = dataset.relative(image)
        try:
            data = image.read_bytes()
            header = decode(data, min_side=64).header  # OpenCV refuses truncated files
        except Exception as exc:
            report.add("error", "unreadable_image", rel, str(exc))
            continue
        readable.append(image)
        digests[hashlib.sha256(data).hexdigest()].append(rel)
        label = dataset.label_path(image)
        if not label.exists():
            report.add("error", "missing_label", rel, "no label file: training would treat it as 'nothing here'")
        else:
            _check_label_file(report, rel, label, header.width, header.height)

    split_of: dict[str, str] = {}
    for split, members in dataset.read_splits().items():
        for p in members:
            rel = dataset.relative(p)
            if not p.exists():
                report.add("error", "missing_file", rel, f"listed in {split}.txt but missing")
            split_of[rel] = split

    rank = {"train": 0, "val": 1, "test": 2, "calibration": 3, "holdout": 4}

    def duplicate(a: str, b: str, how: str) -> None:
        sa, sb = split_of.get(a), split_of.get(b)
        if sa and sb and sa != sb:
            if rank[sa] > rank[sb]:  # report (and --fix moves) the evaluation-side copy, keep the training one
                a, b, sa, sb = b, a, sb, sa
            report.add("error", "leakage", b, f"{how} of {a}: one in {sa}, the other in {sb}", (a,))
        else:
            report.add("warning", f"{how.replace(' ', '_')}", b, f"{how} of {a}", (a,))

    for rels in digests.values():
        for other in rels[1:]:
            duplicate(rels[0], other, "exact duplicate")
    exact = {r for rels in digests.values() for r in rels[1:]}
    hashes = hash_files(readable, desc="perceptual hashes")
    rels = [dataset.relative(p) for p in readable]
    for i, j, d in near_duplicate_pairs(hashes, max_distance):
        if rels[j] not in exact and rels[i] not in exact:
            duplicate(rels[i], rels[j], "near duplicate")
    return report


QUARANTINE_KINDS = ("unreadable_image", "bad_label", "orphan_label", "missing_label", "exact_duplicate", "leakage")


def fix(dataset: Dataset, report: CheckReport) -> list[str]:
    """Move the files of quarantinable findings to quarantine/<kind>/, drop them from the splits."""
    moved: list[str] = []
    for finding in report.findings:
        if finding.kind not in QUARANTINE_KINDS:
            continue
        path = dataset.root / finding.path
        companions = [path]
        if path.suffix != ".txt":
            companions.append(dataset.label_path(path))
        for p in companions:
            if p.exists() or p.is_symlink():
                rel = dataset.relative(p)
                target = dataset.root / "quarantine" / finding.kind / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(p), str(target))
                moved.append(rel)
    if moved:
        gone = set(moved)
        splits = {s: [p for p in members if dataset.relative(p) not in gone] for s, members in dataset.read_splits().items()}
        if any(dataset.split_file(s).exists() for s in SPLITS):
            dataset.write_splits(splits)
    return moved


def cmd_check(args: argparse.Namespace) -> int:
    dataset = Dataset(args.dataset)
    report = check_dataset(dataset, args.max_distance)
    for f in report.findings[: args.show] if args.show else report.findings:
        related = f" (with {', '.join(f.related)})" if f.related else ""
        print(f"{f.severity.upper():7} {f.kind:17} {f.path}: {f.message}{related}")
    print(f"\nchecked {report.images} images, {report.labels} label files")
    for key, n in report.counts().items():
        print(f"  {key}: {n}")
    if args.json:
        Path(args.json).write_text(json.dumps([f.__dict__ for f in report.findings], indent=2))
    if args.fix:
        moved = fix(dataset, report)
        print(f"moved {len(moved)} files to {dataset.root / 'quarantine'}")
        return 0
    return 1 if report.errors else 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="find broken images and labels, duplicates and leakage",
                       formatter_class=HelpFormatter)
    p.add_argument("dataset", type=Path, help="the dataset folder (our layout: images/, labels/, meta.csv)")
    p.add_argument("--fix", action="store_true", help="move offending files to quarantine/ (never deletes)")
    p.add_argument("--max-distance", type=int, default=6, help="pHash Hamming distance for near duplicates")
    p.add_argument("--json", type=Path, help="also write the findings as JSON")
    p.add_argument("--show", type=int, default=0, help="print only the first N findings (0 = all)")
    p.set_defaults(handler=cmd_check)
