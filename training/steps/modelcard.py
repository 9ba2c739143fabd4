"""The model card: what a model saw, how well it does on data it never saw, and what it cannot do.

Rendered from metrics.json and the run record, so every number in the card is one that
`training evaluate` measured. Hand-written limitations (per data set, per class) come from a notes
file and are placed first: they matter more than the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.core.taxonomy import TAXONOMY

PLOTS = ("image_pr_test.png", "image_pr_holdout.png", "BoxPR_curve.png", "confusion_matrix_normalized.png")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def render(metrics: dict[str, Any], run: dict[str, Any], notes: str = "", title: str = "wildscreen model", plot_dir: str = ".") -> str:
    split = metrics["metrics"]["split"]
    detection = metrics["metrics"]["detection"]
    image_level = metrics["metrics"]["image_level"]
    lines = [f"# {title}", ""]
    if notes.strip():
        lines += [notes.strip(), ""]

    lines += ["## What it saw", ""]
    data = metrics.get("data", {})
    if data:
        labels = [c.label for c in TAXONOMY] + ["background"]
        lines += ["Images per split containing each class (an image can count for several):", ""]
        lines += ["| split | images | " + " | ".join(labels) + " |", "|---" * (len(labels) + 2) + "|"]
        for s, entry in data.items():
            counts = entry.get("images_with", {})
            lines.append(f"| {s} | {entry['images']} | " + " | ".join(str(counts.get(k, 0)) for k in labels) + " |")
        lines.append("")
    options = run.get("options", {})
    if options:
        lines += [
            f"Trained from `{options.get('model')}` for {options.get('epochs')} epochs at {options.get('imgsz')} px, "
            f"batch {options.get('batch')}, freeze {options.get('freeze')}, seed {options.get('seed')} "
            f"(Ultralytics {run.get('versions', {}).get('ultralytics')}, torch {run.get('versions', {}).get('torch')}).",
            "",
        ]

    lines += [f"## Detection metrics ({split} split, never trained or calibrated on)", ""]
    lines += ["| class | instances | precision | recall | AP50 | AP50-95 |", "|---|---|---|---|---|---|"]
    for c in TAXONOMY:
        m = detection.get(c.label)
        if m is None:
            lines.append(f"| {c.label} | 0 | - | - | - | - |")
        else:
            lines.append(
                f"| {c.label} | {m.get('instances')} | {_num(m['precision'])} | {_num(m['recall'])} | {_num(m['ap50'])} | {_num(m['ap50_95'])} |"
            )
    a = detection.get("all", {})
    lines += [f"| all | | {_num(a.get('precision'))} | {_num(a.get('recall'))} | {_num(a.get('ap50'))} | {_num(a.get('ap50_95'))} |", ""]

    targets = metrics.get("targets", {})
    budget = f" without sending more than {targets['review_budget']:.0%} of the images without the class to review" if targets.get("review_budget") else ""
    lines += [
        "## Thresholds",
        "",
        f"Calibrated on the {next(iter(metrics['thresholds'].values()))['calibration_split']} split: review at the highest "
        f"confidence that keeps recall >= {targets.get('recall')}{budget}, flag at the lowest that reaches precision >= {targets.get('precision')}; "
        f"measured on the {split} split.",
        "",
        "| class | review threshold | flag threshold | test precision / recall at review | at flag | note |",
        "|---|---|---|---|---|---|",
    ]
    for c in TAXONOMY:
        t = metrics["thresholds"][c.label]
        measured = t.get(split, {})
        review, flag = measured.get("review"), measured.get("flag")
        at_review = f"{_pct(review['precision'])} / {_pct(review['recall'])}" if review else "-"
        at_flag = f"{_pct(flag['precision'])} / {_pct(flag['recall'])}" if flag else "never flags"
        lines.append(
            f"| {c.label} | {_num(t['review_threshold'])} | {_num(t['flag_threshold'])} | {at_review} | {at_flag} | {t.get('note', '')} |"
        )
    lines.append("")

    for name, level in image_level.items():
        lines += [f"## Image-level results, {name} split (what a platform sees)", ""]
        lines += ["| class | images | sent to review or flagged | flagged | class found at review threshold |", "|---|---|---|---|---|"]
        for c in TAXONOMY:
            e = level["per_class"].get(c.label, {})
            if e.get("images"):
                lines.append(
                    f"| {c.label} | {e['images']} | {_pct(e['verdict_review_or_flag'])} | {_pct(e['verdict_flag'])} | {_pct(e['class_recall_at_review'])} |"
                )
            else:
                lines.append(f"| {c.label} | 0 | unknown | unknown | unknown |")
        clean = level["clean"]
        lines += [
            "",
            f"Clean images (no wildlife product): {clean['images']}; falsely flagged {_pct(clean['flag_rate'])}, "
            f"sent to review {_pct(clean['review_rate'])}.",
            "",
            "| source | images | of which clean | flagged | review | review or flag | class found (images with a class) |",
            "|---|---|---|---|---|---|---|",
        ]
        for source, e in level["by_source"].items():
            lines.append(
                f"| {source} | {e['images']} | {e['clean_images']} | {_pct(e['flag_rate'])} | {_pct(e['review_rate'])} | "
                f"{_pct(e['review_or_flag_rate'])} | {_pct(e.get('class_found_rate'))} |"
            )
        lines.append("")

    plots = [p for p in PLOTS if (Path(plot_dir) / p).exists()] if plot_dir else []
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += [f"Model sha256 `{metrics['model']['sha256']}`.", ""]
    return "\n".join(lines)


def write_model_card(path: Path, metrics: dict[str, Any], run: dict[str, Any], notes: str = "") -> Path:
    path = Path(path)
    path.write_text(render(metrics, run, notes, plot_dir=str(path.parent)))
    return path
