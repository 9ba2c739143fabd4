"""`training head-fit`: fit the image-level head of one variant, calibrate it with the detector, write it.

    python -m training head-fit --run /work/features-run --variant lite0/whole+2x2 --out /work/features-run/heads

Reads `<run>/table.csv`, the variant's feature cache and `<run>/detector-<v>.npz` (written by
`training head-detector`); fits on the train role (seconds), sets thresholds on the calibration
role together with the detector's (see calibration.py), and writes `<out>/<variant>/<version>.head.npz`
with `<version>.head.json`, the manifest entry the server reads (see export.py). A damaged feature
cache stops it with the file to delete; images not cached yet are left out and counted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.core.taxonomy import LABELS
from training.imagelevel.cache import CacheMismatch, CorruptFeatureCache
from training.imagelevel.calibration import DEFAULT_BUDGET, ClassCalibration, calibrate_class
from training.imagelevel.dataset import HeadData, Variant, load_head_data
from training.imagelevel.detector import load_scores
from training.imagelevel.export import write_head
from training.imagelevel.head import LinearHead, fit_head
from training.recipes.default_v3 import HEAD_NEVER_FLAGS

DEFAULT_L2 = 1e-3


@dataclass(frozen=True)
class ServedDetector:
    version: str
    review: np.ndarray
    """(K,) the served review thresholds, per taxonomy class."""
    flag: np.ndarray
    """(K,) the served flag thresholds; inf where the class never flags."""


@dataclass(frozen=True)
class FittedVariant:
    variant: Variant
    data: HeadData
    meta: dict
    head: LinearHead
    scores: np.ndarray
    """(N, K) the head's scores for every row of `data`."""
    detector: np.ndarray
    """(N, K) the detector's best confidence per class; NaN where not scored (the train role)."""
    alone: list[ClassCalibration]
    """The head's thresholds when it screens alone (the whole budget is its own)."""
    fused: list[ClassCalibration]
    """The head's and the detector's thresholds when they screen together (v3)."""


def served_detector(weights: Path, version: str) -> ServedDetector:
    from server.core.manifest import WeightsStore

    manifest = WeightsStore(weights).get(version)
    review, flag = np.full(len(LABELS), np.inf), np.full(len(LABELS), np.inf)
    for c in manifest.classes:
        review[LABELS.index(c.label)] = c.review_threshold
        flag[LABELS.index(c.label)] = np.inf if c.flag_threshold is None else c.flag_threshold
    return ServedDetector(version, review, flag)


def detector_matrix(run: Path, version: str, sha256: np.ndarray) -> np.ndarray:
    scores, _ = load_scores(run / f"detector-{version}.npz")
    nan = np.full(len(LABELS), np.nan, np.float32)
    return np.stack([scores.get(k, nan) for k in sha256.tolist()]) if len(sha256) else np.zeros((0, len(LABELS)))


def calibrate(scores: np.ndarray, detector: np.ndarray | None, y: np.ndarray, served: ServedDetector,
              budget: float) -> list[ClassCalibration]:
    """Every class's thresholds on the calibration rows given (detector None: the head alone)."""
    out = []
    for k, label in enumerate(LABELS):
        flag = None if not np.isfinite(served.flag[k]) else float(served.flag[k])
        det = None if detector is None else np.nan_to_num(detector[:, k], nan=0.0)
        out.append(calibrate_class(label, scores[:, k], det, y[:, k] > 0, float(served.review[k]), flag, budget,
                                   head_may_flag=label not in HEAD_NEVER_FLAGS))
    return out


def fit_variant(run: Path, variant: Variant, shared: Path, served: ServedDetector, l2: float = DEFAULT_L2,
                budget: float = DEFAULT_BUDGET, seed: int = 0, progress: bool = True) -> FittedVariant:
    """Fit on the train role, calibrate on the calibration role (alone and with the detector)."""
    data, meta = load_head_data(run, variant, shared, seed, progress)
    train = data.role("train")
    head = fit_head(data.x[train], data.y[train], l2=l2, seed=seed)
    scores = head.scores(data.x)
    detector = detector_matrix(run, served.version, data.sha256)
    cal = data.role("calibration")
    if np.isnan(detector[cal]).any():
        missing = int(np.isnan(detector[cal]).any(1).sum())
        raise ValueError(f"{missing} calibration images have no {served.version} scores in {run}: "
                         f"run `python -m training head-detector --run {run} --version {served.version}` first")
    alone = calibrate(scores[cal], None, data.y[cal], served, budget)
    fused = calibrate(scores[cal], detector[cal], data.y[cal], served, budget)
    return FittedVariant(variant, data, meta, head, scores, detector, alone, fused)


def export_variant(fitted: FittedVariant, out: Path, version: str, budget: float, fused: bool = True,
                   metrics: dict | None = None) -> dict:
    """Write the variant's head with its thresholds (fused: for serving beside the detector)."""
    cal = fitted.fused if fused else fitted.alone
    review = [min(1.0, c.head_review) for c in cal]
    flag = [None if c.head_flag is None else max(c.head_flag, r) for c, r in zip(cal, review)]
    calibration = {
        "budget": budget, "budget_meaning": "per class: share of calibration images without the class sent to review "
                                            "for it (detector OR head)",
        "screened_with": "head and detector (v3)" if fused else "head alone",
        "images": int(fitted.data.role("calibration").sum()),
        "head_never_flags": list(HEAD_NEVER_FLAGS),
        "flag_rule": "head flags alone only at calibration precision >= 0.9 with >= 10 true positives and <= "
                     "budget/8 of clean calibration photos flagged",
        "classes": {c.label: c.as_dict() for c in cal},
    }
    entry = write_head(out, version, fitted.head.weight, fitted.head.bias, labels=LABELS, review_thresholds=review,
                       flag_thresholds=flag, backbone=fitted.variant.backbone,
                       backbone_sha256=fitted.meta["weights_sha256"], grids=fitted.variant.grids,
                       tile_overlap=float(fitted.meta["tile_overlap"]), calibration=calibration, metrics=metrics)
    tmp = out / f"{version}.head.json.tmp"
    tmp.write_text(json.dumps(entry, indent=2) + "\n")
    os.replace(tmp, out / f"{version}.head.json")
    return entry


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="the features run: table.csv, <backbone>/, detector-<v>.npz")
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("WILDSCREEN_SHARED", "../shared")),
                   help="../shared, for wildscan's v2 roles (default: $WILDSCREEN_SHARED, else ../shared)")
    p.add_argument("--weights", type=Path, default=Path("weights"), help="where the detector's manifest is")
    p.add_argument("--detector", default="v2", help="the detector version the head is fused with")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                   help="review budget: per class, share of calibration images without it sent to review (default 0.015)")
    p.add_argument("--l2", type=float, default=DEFAULT_L2, help="L2 strength on standardised features")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("head-fit", help="fit, calibrate and write the image-level head of one variant",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--variant", type=Variant.parse, default=Variant.parse("lite0/whole"),
                   help="backbone/pooling: lite0/whole, lite0/whole+2x2, lite0/whole+2x2+3x3, lite2/whole, lite2/whole+2x2")
    p.add_argument("--out", type=Path, required=True, help="candidates folder (never weights/: `promote` does that)")
    p.add_argument("--version", default="v3")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        served = served_detector(args.weights, args.detector)
        fitted = fit_variant(args.run, args.variant, args.shared, served, args.l2, args.budget, args.seed,
                             not args.no_progress)
    except (CorruptFeatureCache, CacheMismatch, FileNotFoundError, ValueError) as exc:
        print(f"head-fit: {exc}", file=sys.stderr)
        return 2
    out = args.out / args.variant.name.replace("/", "-")
    entry = export_variant(fitted, out, args.version, args.budget)
    counts = {role: int(fitted.data.role(role).sum()) for role in ("train", "calibration", "holdout")}
    print(f"{args.variant.name}: fitted on {counts['train']} images, calibrated on {counts['calibration']} "
          f"({counts['holdout']} held out; {fitted.data.uncached} photos of the table not in the cache yet); "
          f"wrote {out / entry['file']}")
    for c in fitted.fused:
        flag = "never" if c.head_flag is None else f"{c.head_flag:.3f} (precision {c.flag_precision:.2f})"
        recall = "-" if c.recall is None else f"{c.recall:.2f} of {c.positives}"
        print(f"  {c.label:16s} head review {c.head_review:.3f}  head flag {flag}  detector review "
              f"{c.detector_review:.3f}  false review {c.false_review_share:.3f}  recall {recall}")
    return 0
