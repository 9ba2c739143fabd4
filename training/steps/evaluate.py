"""`training evaluate`: how good is a model, in the terms a platform and a reviewer care about.

1. Detection metrics on the test split (Ultralytics' validator): per-class precision, recall,
   AP50, AP50-95, with its confusion matrix and PR curves as PNGs.
2. Image-level scores through our own serving engine (same decode, letterbox and NMS as the
   server): per image and class, the highest confidence.
3. Thresholds calibrated on the val split (`calibrate`), then measured on the test split, which
   the calibration never saw: per class, how many images containing it are flagged or sent to
   review; of the clean images, how many are falsely flagged or reviewed; the same per source, so
   look-alike negatives and held-out sources show up by name.
Writes metrics.json, plots, and the model card into the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from server.core.detections import Detections
from server.core.policy import ClassPolicy, Verdict, image_verdicts
from server.core.taxonomy import LABELS, TAXONOMY
from training.layout import BACKGROUND, Dataset, image_classes
from training.metrics import detection_metrics
from training.modelfile import candidate_engine, detect_in_files, resolve_device
from training.runs import dataset_counts, read_run_record
from training.sheets import contact_sheet
from training.steps.calibrate import Calibration, calibrate_class, operating_point
from training.steps.modelcard import write_model_card
from server.settings import HelpFormatter

SCORE_FLOOR = 0.01


@dataclass
class EvaluationOptions:
    model: Path
    data: Path
    out: Path
    split: str = "test"
    calibration_split: str = "val"
    """One split or several joined by commas (e.g. `val,calibration`: thresholds set on held-out sources too)."""
    target_precision: float = 0.90
    target_recall: float = 0.90
    review_budget: float | None = 0.05
    device: str = "auto"
    batch: int = 8
    card_notes: Path | None = None
    imgsz: int | None = None
    """Serve at this input size instead of the training size (evaluated, then promoted with --imgsz)."""
    reports: Path | None = None
    """Where the contact sheets of predictions go (an ignored folder: they show the data's photos)."""
    holdout_sources: tuple[str, ...] = ()
    """Sources to treat as held out at evaluation: taken out of the calibration and test images and
    scored as part of the holdout set (refused when any of their images is in train)."""


@dataclass(frozen=True)
class ScoredImages:
    paths: list[Path]
    scores: np.ndarray
    """(N, classes) highest confidence per class, 0 where none."""
    truth: np.ndarray
    """(N, classes) bool: the labels contain the class."""
    sources: list[str]
    detections: list[Detections]
    """What the engine found in each image, above SCORE_FLOOR (for the contact sheets)."""


def score_split(engine, dataset: Dataset, images: list[Path], batch: int, desc: str) -> ScoredImages:
    meta = dataset.read_meta()
    scores = np.zeros((len(images), len(TAXONOMY)), dtype=np.float32)
    truth = np.zeros((len(images), len(TAXONOMY)), dtype=bool)
    found: list[Detections] = []
    for i, image in enumerate(images):
        for label in image_classes(dataset, image, meta) - {BACKGROUND}:
            truth[i, LABELS.index(label)] = True
    for i, (_, _, detections) in enumerate(detect_in_files(engine, images, SCORE_FLOOR, batch, desc)):
        found.append(detections)
        for c, s in zip(detections.class_id, detections.confidence):
            scores[i, c] = max(scores[i, c], s)
    sources = [meta[r].source if (r := dataset.relative(p)) in meta else "unknown" for p in images]
    return ScoredImages(images, scores, truth, sources, found)


def image_level(scored: ScoredImages, policies: tuple[ClassPolicy, ...]) -> dict[str, Any]:
    v = image_verdicts(scored.scores, policies)
    clean = ~scored.truth.any(1)
    result: dict[str, Any] = {"images": len(v), "per_class": {}, "clean": {}, "by_source": {}}
    for p in policies:
        has = scored.truth[:, p.id]
        entry = {"images": int(has.sum())}
        if has.any():
            entry |= {
                "class_recall_at_review": float(np.mean(scored.scores[has, p.id] >= p.review_threshold)),
                "class_recall_at_flag": float(np.mean(scored.scores[has, p.id] >= p.flag_threshold)) if p.flag_threshold is not None else 0.0,
                "verdict_review_or_flag": float(np.mean(v[has] >= Verdict.REVIEW)),
                "verdict_flag": float(np.mean(v[has] == Verdict.FLAG)),
            }
        result["per_class"][p.label] = entry
    result["clean"] = _rates(v[clean])
    found = _classes_found(scored, policies)
    for source in sorted(set(scored.sources)):
        mask = np.array([s == source for s in scored.sources])
        entry = _rates(v[mask])
        entry["clean_images"] = int((mask & clean).sum())
        with_class = mask & ~clean
        entry["class_images"] = int(with_class.sum())
        entry["class_found_rate"] = float(np.mean(found[with_class])) if with_class.any() else None
        result["by_source"][source] = entry
    return result


def _classes_found(scored: ScoredImages, policies: tuple[ClassPolicy, ...]) -> np.ndarray:
    """Per image: every class it shows scores at or above that class's review threshold (False for clean images)."""
    found = scored.truth.any(1)
    for p in policies:
        has = scored.truth[:, p.id]
        found &= ~has | (scored.scores[:, p.id] >= p.review_threshold)
    return found


def source_table(level: dict[str, Any]) -> list[str]:
    """The per-source lines `training evaluate` prints: images, review-or-flag share, class found."""
    out = [f"{'source':<28} {'images':>6} {'clean':>6} {'review/flag':>11} {'flagged':>8} {'class found':>11}"]
    for source, e in level["by_source"].items():
        found = "-" if e.get("class_found_rate") is None else f"{e['class_found_rate']:.1%}"
        out.append(f"{source[:28]:<28} {e['images']:>6} {e['clean_images']:>6} {e['review_or_flag_rate']:>11.1%} {e['flag_rate']:>8.1%} {found:>11}")
    return out


def examples(scored: ScoredImages) -> dict[str, dict[str, Any]]:
    """Per class, the test image the model scores highest among those that show it: a smoke test
    for a served model (tests/test_default_model.py), not a metric. Paths of images that live in
    ../shared are given relative to it, so that they resolve on any machine that has it."""
    out = {}
    for c in TAXONOMY:
        positives = np.flatnonzero(scored.truth[:, c.id] & (scored.scores.argmax(1) == c.id) & (scored.scores[:, c.id] > 0))
        if len(positives):
            best = int(positives[np.argmax(scored.scores[positives, c.id])])
            out[c.label] = {"image": _portable(scored.paths[best]), "score": float(scored.scores[best, c.id])}
    return out


def write_prediction_sheets(scored: ScoredImages, policies: tuple[ClassPolicy, ...], folder: Path) -> list[Path]:
    """Per class, contact sheets of the images it finds (at the review threshold), of those it
    misses, and of the images without it that it sends to review: what a person should look at
    before trusting the numbers. Boxes at or above the class's review threshold are drawn."""
    written = []
    for p in policies:
        has = scored.truth[:, p.id]
        fires = scored.scores[:, p.id] >= p.review_threshold
        groups = {"found": has & fires, "missed": has & ~fires, "false_review": ~has & fires}
        for name, mask in groups.items():
            items = []
            for i in np.flatnonzero(mask):
                d = scored.detections[i]
                shown = d[(d.class_id == p.id) & (d.confidence >= p.review_threshold)] if name != "missed" else d[d.confidence >= 0.1]
                items.append((scored.paths[i], shown, f"{scored.sources[i][:14]} {p.label[:8]} {scored.scores[i, p.id]:.2f}"))
            if items:
                written.append(contact_sheet(items, folder / f"{p.label}_{name}.png"))
    return written


SHARED_PREFIX = "shared:"


def _portable(path: Path) -> str:
    """`shared:<path under ../shared>` for an image there (it resolves on any machine that has
    ../shared), else the absolute path."""
    real = Path(path).resolve()
    shared = Path(os.environ.get("WILDSCREEN_SHARED", "../shared")).resolve()
    return f"{SHARED_PREFIX}{real.relative_to(shared).as_posix()}" if real.is_relative_to(shared) else str(real)


def example_image(recorded: str, shared: Path) -> Path:
    """Where an image recorded by `examples` is on this machine, ../shared being at `shared`."""
    return shared / recorded.removeprefix(SHARED_PREFIX) if recorded.startswith(SHARED_PREFIX) else Path(recorded)


def _rates(v: np.ndarray) -> dict[str, Any]:
    n = len(v)
    return {
        "images": n,
        "flag_rate": float(np.mean(v == Verdict.FLAG)) if n else 0.0,
        "review_rate": float(np.mean(v == Verdict.REVIEW)) if n else 0.0,
        "review_or_flag_rate": float(np.mean(v >= Verdict.REVIEW)) if n else 0.0,
    }


def plot_image_pr(scored: ScoredImages, calibrations: dict[str, Calibration], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for c in TAXONOMY:
        positives = scored.truth[:, c.id]
        if not positives.any():
            continue
        thresholds = np.linspace(SCORE_FLOOR, 1.0, 200)
        points = [operating_point(scored.scores[:, c.id], positives, t) for t in thresholds]
        line = ax.plot([p.recall for p in points], [p.precision for p in points], label=f"{c.label} ({int(positives.sum())} images)")
        cal = calibrations.get(c.label)
        if cal is not None:
            for point, marker in ((cal.review, "o"), (cal.flag, "s")):
                if point is not None:
                    p = operating_point(scored.scores[:, c.id], positives, point.threshold)
                    ax.plot(p.recall, p.precision, marker, color=line[0].get_color(), markersize=8)
    ax.set_xlabel("recall (images containing the class)")
    ax.set_ylabel("precision (images scored above the threshold)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}\no = review threshold, \u25a0 = flag threshold")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def hold_out_sources(dataset: Dataset, splits: dict[str, list[Path]], sources: tuple[str, ...]) -> dict[str, list[Path]]:
    """Move every image of `sources` out of the other splits into holdout; a source the model trained
    on cannot be held out afterwards."""
    if not sources:
        return splits
    meta = dataset.read_meta()
    source_of = lambda p: meta[r].source if (r := dataset.relative(p)) in meta else ""  # noqa: E731
    trained = sorted({source_of(p) for p in splits.get("train", [])} & set(sources))
    if trained:
        raise ValueError(f"cannot hold out {trained}: the train split has images of them")
    unknown = sorted(set(sources) - {source_of(p) for members in splits.values() for p in members})
    if unknown:
        raise ValueError(f"no images of sources {unknown} in any split")
    out = {name: [p for p in members if source_of(p) not in sources] for name, members in splits.items()}
    out["holdout"] = out.get("holdout", []) + [p for name, members in splits.items() if name != "holdout" for p in members
                                               if source_of(p) in sources]
    return out


def evaluate(options: EvaluationOptions) -> dict[str, Any]:
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = yaml.safe_load(Path(options.data).read_text())
    dataset = Dataset(Path(spec["path"]))
    splits = dataset.read_splits()
    if not splits.get(options.split):
        raise ValueError(f"split {options.split!r} of {options.data} is empty; run `training split` first")
    device = resolve_device(options.device)
    engine = candidate_engine(options.model, device, input_size=options.imgsz)
    input_size = engine.input_size

    splits = hold_out_sources(dataset, splits, options.holdout_sources)
    calibration_images = [p for name in options.calibration_split.split(",") for p in splits.get(name, [])] or splits[options.split]
    calibration_scored = score_split(engine, dataset, calibration_images, options.batch, f"scoring {options.calibration_split}")
    calibrations = {
        c.label: calibrate_class(
            calibration_scored.scores[:, c.id], calibration_scored.truth[:, c.id], options.target_precision, options.target_recall,
            review_budget=options.review_budget,
        )
        for c in TAXONOMY
    }
    policies = tuple(ClassPolicy(c.id, c.label, calibrations[c.label].review_threshold, calibrations[c.label].flag_threshold) for c in TAXONOMY)

    evaluated = {options.split: score_split(engine, dataset, splits[options.split], options.batch, f"scoring {options.split}")}
    if splits.get("holdout") and options.split != "holdout":
        evaluated["holdout"] = score_split(engine, dataset, splits["holdout"], options.batch, "scoring holdout")

    thresholds = {}
    test = evaluated[options.split]
    for c in TAXONOMY:
        cal = calibrations[c.label]
        positives = test.truth[:, c.id]
        thresholds[c.label] = {
            "review_threshold": cal.review_threshold,
            "flag_threshold": cal.flag_threshold,
            "note": cal.note,
            "calibration_split": options.calibration_split,
            "calibration": {"positives": cal.positives, "review": asdict(cal.review), "flag": asdict(cal.flag) if cal.flag else None},
            options.split: {
                "positives": int(positives.sum()),
                "review": asdict(operating_point(test.scores[:, c.id], positives, cal.review_threshold)),
                "flag": asdict(operating_point(test.scores[:, c.id], positives, cal.flag_threshold)) if cal.flag_threshold is not None else None,
            },
        }
    result = {
        "model": {"path": str(options.model), "sha256": engine.manifest.sha256, "input_size": input_size},
        "data": dataset_counts(options.data),
        "targets": {"precision": options.target_precision, "recall": options.target_recall, "review_budget": options.review_budget},
        "thresholds": thresholds,
        "metrics": {
            "split": options.split,
            "detection": detection_metrics(options.model, options.data, options.split, input_size, device, out),
            "image_level": {name: image_level(scored, policies) for name, scored in evaluated.items()},
            "examples": examples(test),
        },
    }
    for name, scored in evaluated.items():
        plot_image_pr(scored, calibrations, out / f"image_pr_{name}.png", f"image-level precision/recall, {name} split")
    if options.reports:
        write_prediction_sheets(test, policies, Path(options.reports))
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    run_record = read_run_record(Path(options.model).parent.parent)
    notes = Path(options.card_notes).read_text() if options.card_notes else ""
    write_model_card(out / "model_card.md", result, run_record, notes)
    return result


def print_summary(result: dict[str, Any], split: str) -> None:
    """Per class AP and thresholds, then per image-level set its clean, per-class and per-source rates."""
    print(f"{'class':<16} {'AP50':>6} {'AP50-95':>8} {'review':>7} {'flag':>6}  test P/R at review")
    for label, t in result["thresholds"].items():
        d = result["metrics"]["detection"].get(label, {})
        r = t[split]["review"]
        flag = "never" if t["flag_threshold"] is None else f"{t['flag_threshold']:.3f}"
        print(f"{label:<16} {d.get('ap50', float('nan')):>6.3f} {d.get('ap50_95', float('nan')):>8.3f} "
              f"{t['review_threshold']:>7.3f} {flag:>6}  {r['precision']:.2f}/{r['recall']:.2f}")
    for name, level in result["metrics"]["image_level"].items():
        clean = level["clean"]
        print(f"\n{name}: clean images {clean['images']}, flagged {clean['flag_rate']:.1%}, reviewed {clean['review_rate']:.1%}")
        print(f"{'class':<16} {'images':>6} {'review/flag':>11} {'flagged':>8} {'class found':>11}")
        for label, e in level["per_class"].items():
            if e["images"]:
                print(f"{label:<16} {e['images']:>6} {e['verdict_review_or_flag']:>11.1%} {e['verdict_flag']:>8.1%} {e['class_recall_at_review']:>11.1%}")
        print("\n".join(source_table(level)))


def cmd_evaluate(args: argparse.Namespace) -> int:
    out = args.out or Path(args.model).resolve().parent.parent / "evaluation"
    result = evaluate(EvaluationOptions(
        model=args.model, data=args.data, out=out, split=args.split, calibration_split=args.calibration_split,
        target_precision=args.target_precision, target_recall=args.target_recall, device=args.device,
        card_notes=args.card_notes, imgsz=args.imgsz, review_budget=args.review_budget or None,
        reports=args.reports or Path("reports") / out.resolve().parent.name / out.name,
        holdout_sources=tuple(args.holdout_source or ()),
    ))
    print_summary(result, args.split)
    print(f"wrote {out / 'metrics.json'} and {out / 'model_card.md'}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics, calibrated thresholds and a model card", formatter_class=HelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="e.g. runs/train/weights/best.pt")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, help="default: <run>/evaluation")
    p.add_argument("--split", default="test")
    p.add_argument("--calibration-split", default="val", help="split(s) to set thresholds on, comma-separated (e.g. val,calibration)")
    p.add_argument("--holdout-source", action="append",
                   help="score this source's images as held out (out of calibration and test; refused if it is in train; repeatable)")
    p.add_argument("--target-precision", type=float, default=0.90)
    p.add_argument("--target-recall", type=float, default=0.90)
    p.add_argument("--review-budget", type=float, default=0.05,
                   help="most of the images without a class that its review threshold may send to review (0 = no limit)")
    p.add_argument("--device", default="auto")
    p.add_argument("--card-notes", type=Path, help="markdown placed first in the card: data and limitations")
    p.add_argument("--reports", type=Path, help="contact sheets of hits, misses and false reviews on the test split "
                   "(default reports/<run>/<out>; ignored by git: they show the data's photos)")
    p.add_argument("--imgsz", type=int, help="evaluate (and later serve) at this input size; default: the training size")
    p.set_defaults(handler=cmd_evaluate)
