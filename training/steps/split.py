"""`training split`: train/val/test that never splits a group, stratified by class, seeded.

A group is everything that must stay together: one listing, one seizure, one museum object, one
stretch of video (from meta.csv), joined with every near-duplicate cluster (perceptual hash).
Groups are dealt out largest first, each to the split that is furthest below its share of the
group's classes, so rare classes reach val and test too.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.core.taxonomy import LABELS
from training.layout import BACKGROUND, Dataset, image_classes
from training.phash import DEFAULT_MAX_DISTANCE, clusters, hash_files, near_duplicate_pairs
from server.settings import HelpFormatter

@dataclass(frozen=True)
class SplitSummary:
    counts: dict[str, Counter]
    groups: int

    def lines(self) -> list[str]:
        keys = list(LABELS) + [BACKGROUND]
        out = [f"{self.groups} groups (source groups joined with near-duplicate clusters)"]
        out.append("split      images  " + "  ".join(f"{k[:12]:>12}" for k in keys))
        for split, c in self.counts.items():
            out.append(f"{split:<9} {c['images']:>7}  " + "  ".join(f"{c[k]:>12}" for k in keys))
        return out


def split_dataset(
    dataset: Dataset,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    holdout_sources: tuple[str, ...] = (),
    calibration_sources: tuple[str, ...] = (),
    train_only_sources: tuple[str, ...] = (),
) -> SplitSummary:
    """`holdout_sources` and `calibration_sources` go whole into the holdout and calibration splits;
    `train_only_sources` (generated images such as composites) only into train."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions {fractions} must be non-negative and sum to 1")
    names = ("train", "val", "test")
    meta = dataset.read_meta()
    images = dataset.images()
    rels = [dataset.relative(p) for p in images]
    if overlap := set(holdout_sources) & set(calibration_sources):
        raise ValueError(f"sources both held out and used for calibration: {sorted(overlap)}")
    source = {r: meta[r].source if r in meta else "" for r in rels}
    holdout = [p for p, r in zip(images, rels) if source[r] in holdout_sources]
    calibration = [p for p, r in zip(images, rels) if source[r] in calibration_sources]
    train_only = [p for p, r in zip(images, rels) if source[r] in train_only_sources]
    kept_apart = set(holdout_sources) | set(calibration_sources) | set(train_only_sources)
    pool = [(p, r) for p, r in zip(images, rels) if source[r] not in kept_apart]

    # Join source groups and near-duplicate clusters into components.
    group_index: dict[str, int] = {}
    pairs = []
    for i, (_, rel) in enumerate(pool):
        first = group_index.setdefault(dataset.group_of(rel, meta), i)
        if first != i:
            pairs.append((first, i, 0))
    hashes = hash_files([p for p, _ in pool], desc="perceptual hashes")
    pairs += near_duplicate_pairs(hashes, max_distance)
    component_of = clusters(len(pool), pairs)
    components: dict[int, list[int]] = {}
    for i, c in enumerate(component_of):
        components.setdefault(c, []).append(i)

    classes = [image_classes(dataset, p, meta) for p, _ in pool]
    totals = Counter(k for cs in classes for k in cs)
    rng = np.random.default_rng(seed)
    order = list(components.values())
    rng.shuffle(order)
    order.sort(key=len, reverse=True)

    filled = {s: Counter() for s in names}
    assignment: dict[str, list[Path]] = {s: [] for s in names}
    for members in order:
        profile = Counter(k for i in members for k in classes[i])
        profile["images"] = len(members)

        def fill_after(split_index: int) -> float:
            s, share = names[split_index], fractions[split_index]
            if share == 0:
                return float("inf")
            ratios = [(filled[s][k] + n) / (share * (totals[k] if k != "images" else len(pool))) for k, n in profile.items()]
            return max(ratios)

        best = min(range(len(names)), key=fill_after)
        filled[names[best]].update(profile)
        assignment[names[best]].extend(pool[i][0] for i in members)

    splits = dict(assignment)
    splits["train"] = splits["train"] + train_only
    if holdout:
        splits["holdout"] = holdout
    if calibration:
        splits["calibration"] = calibration
    dataset.write_splits(splits)
    counts = {}
    for split, members in splits.items():
        c = Counter(k for p in members for k in image_classes(dataset, p, meta))
        c["images"] = len(members)
        counts[split] = c
    return SplitSummary(counts, len(components))


def cmd_split(args: argparse.Namespace) -> int:
    summary = split_dataset(
        Dataset(args.dataset), tuple(args.fractions), args.seed, args.max_distance, tuple(args.holdout_source or ()),
        tuple(args.calibration_source or ()), tuple(args.train_only_source or ()),
    )
    print("\n".join(summary.lines()))
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="group-aware, stratified train/val/test split", formatter_class=HelpFormatter)
    p.add_argument("dataset", type=Path, help="the dataset folder (our layout: images/, labels/, meta.csv)")
    p.add_argument("--fractions", type=float, nargs=3, default=[0.7, 0.15, 0.15], metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-distance", type=int, default=6)
    p.add_argument("--holdout-source", action="append", help="keep this whole source out of train/val/test, in holdout (repeatable)")
    p.add_argument("--calibration-source", action="append",
                   help="keep this whole source out of train/val/test, in calibration: thresholds are set on it (repeatable)")
    p.add_argument("--train-only-source", action="append", help="put this source (e.g. composites) only into train (repeatable)")
    p.set_defaults(handler=cmd_split)
