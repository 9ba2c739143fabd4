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

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from server.core.detections import Detections
from server.core.policy import ClassPolicy, Verdict, image_verdicts
from server.core.taxonomy import LABELS, TAXONOMY
from training.calibrate import Calibration, calibrate_class, operating_point
from training.layout import Dataset
from training.sheets import contact_sheet
from training.split import BACKGROUND, image_classes
from training.modelfile import candidate_engine, detect_in_files

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


def detection_metrics(model: Path, data: Path, split: str, imgsz: int, device: str, out: Path) -> dict[str, Any]:
    """Ultralytics' validator on `split`: per-class P, R, AP50, AP50-95 and its plots under out/."""
    from ultralytics import YOLO

    result = YOLO(str(model)).val(
        data=str(data), split=split, imgsz=imgsz, batch=8, device=device, project=str(out.resolve()),
        name=f"val_{split}", exist_ok=True, plots=True, verbose=False, conf=0.001,
    )
    box = result.box
    metrics: dict[str, Any] = {}
    per_class_instances = getattr(result, "nt_per_class", None)
    for i, class_index in enumerate(box.ap_class_index):
        label = LABELS[int(class_index)]
        metrics[label] = {
            "precision": float(box.p[i]),
            "recall": float(box.r[i]),
            "ap50": float(box.ap50[i]),
            "ap50_95": float(box.ap[i]),
            "instances": int(per_class_instances[int(class_index)]) if per_class_instances is not None else None,
        }
    metrics["all"] = {"precision": float(box.mp), "recall": float(box.mr), "ap50": float(box.map50), "ap50_95": float(box.map)}
    plots = out / f"val_{split}"
    for name in ("confusion_matrix_normalized.png", "BoxPR_curve.png"):
        if (plots / name).exists():
            shutil.copyfile(plots / name, out / name)
    return metrics


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
    from training.modelcard import write_model_card
    from training.train import dataset_counts, read_run_record, resolve_device

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
