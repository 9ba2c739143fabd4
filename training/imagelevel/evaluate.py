"""`training head-evaluate`: detector alone, head alone and both (v3), per class and held-out source.

    python -m training head-evaluate --run /work/features-run --out /work/features-run/heads

Fits every variant whose features are cached (see dataset.VARIANTS), calibrates each alone and
with the detector on the calibration role, and scores them on the holdout role only, in one
table: for each class and held-out source the photos found (REVIEW or FLAG for the right class),
and for clean photos those sent to review / flagged (any class). Small sources are counts, not
rates. Writes `heldout.md` (the tables, the thresholds, the roles, CPU cost per image),
`heldout.json`, `quality_per_ms.png`, and each variant's candidate head (`<variant>/v3.head.npz`
and its manifest entry); nothing goes into weights/.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from server.core.taxonomy import LABELS
from training.imagelevel.cache import CacheMismatch, CorruptFeatureCache
from training.imagelevel.dataset import VARIANTS, Variant
from training.imagelevel.fit import FittedVariant, ServedDetector, add_arguments, export_variant, fit_variant, served_detector
from training.imagelevel.sources import LabelledImage

BACKBONE_MS = {"lite0/whole": 11.3, "lite0/whole+2x2": 58.5, "lite0/whole+2x2+3x3": 166.0,
               "lite2/whole": 23.8, "lite2/whole+2x2": 122.0}
"""CPU ms per image, one thread, measured by the backbone's author (whole image plus its tiles)."""
DETECTOR_MS = 31.0
"""v2 per image on one core at 320 px (README Performance)."""
COUNTS_BELOW = 20
"""Sources with fewer held-out photos are reported as counts only."""
CLEAN = "clean photos"


def report_row(r: LabelledImage) -> tuple[str, str]:
    """(section, row) of the table: a class and where its photos come from, or `clean photos` and what they are."""
    if r.labels:
        if r.source == "wildscan":
            return r.labels[0], f"wildscan {r.kind}"
        if r.source in ("reptiles-more", "reptiles"):
            return r.labels[0], r.group
        return r.labels[0], f"{r.source} ({r.kind})"
    if r.source == "met-ivory":
        return CLEAN, f"met-ivory {r.kind}" + (" (bone carvings: flagged is the target)" if "look-alike" in r.kind else "")
    if r.source == "negatives":
        return CLEAN, "negatives/misc (crafts, carvings)" if "/misc" in r.group else "caltech look-alikes (held-out kinds)"
    if r.source == "animals":
        return CLEAN, "animals and pets (held-out kinds)"
    if r.source == "products":
        return CLEAN, "products (held-out shops)"
    if r.source == "wildscan":
        return CLEAN, "wildscan other wildlife and products"
    return CLEAN, r.group


def verdicts(scores: np.ndarray, review: np.ndarray, flag: np.ndarray) -> np.ndarray:
    """(N, K) per-class verdicts: 0 clear, 1 review, 2 flag (a NaN score is clear)."""
    s = np.nan_to_num(scores, nan=-1.0)
    return (s >= review).astype(np.int8) + (s >= np.maximum(flag, review)).astype(np.int8)


def systems(fitted: Sequence[FittedVariant], served: ServedDetector) -> dict[str, np.ndarray]:
    """name -> (N, K) verdicts on the rows of the first variant's data (all variants share their rows)."""
    base = fitted[0]
    out = {served.version: verdicts(base.detector, served.review, served.flag)}
    for f in fitted:
        assert np.array_equal(f.data.sha256, base.data.sha256), "variants must be evaluated on the same images"
        alone_review = np.array([c.head_review for c in f.alone])
        alone_flag = np.array([np.inf if c.head_flag is None else c.head_flag for c in f.alone])
        out[f"head {short(f.variant)}"] = verdicts(f.scores, alone_review, alone_flag)
    for f in fitted:
        head_review = np.array([c.head_review for c in f.fused])
        head_flag = np.array([np.inf if c.head_flag is None else c.head_flag for c in f.fused])
        det_review = np.array([c.detector_review for c in f.fused])
        det_flag = np.array([np.inf if c.detector_flag is None else c.detector_flag for c in f.fused])
        out[f"v3 {short(f.variant)}"] = np.maximum(verdicts(f.scores, head_review, head_flag),
                                                   verdicts(f.detector, det_review, det_flag))
    return out


def short(v: Variant) -> str:
    return {"lite0": "L0", "lite2": "L2"}[v.backbone] + "".join(f"+{g}" for g in v.grids)


def _cell(hits: int, n: int) -> str:
    return f"{hits}" if n < COUNTS_BELOW else f"{hits} ({100 * hits / n:.0f}%)"


def held_out_table(rows: Sequence[LabelledImage], y: np.ndarray, holdout: np.ndarray,
                   verdict_sets: dict[str, np.ndarray]) -> tuple[str, dict]:
    """Markdown and a JSON summary: found per class and source; review / flag on clean photos."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in np.flatnonzero(holdout):
        groups[report_row(rows[i])].append(i)
    order = [*LABELS, CLEAN]
    names = list(verdict_sets)
    lines = ["| class | held-out source | images | " + " | ".join(names) + " |", "|---|---|---:|" + "---:|" * len(names)]
    summary: dict = {name: {} for name in names}
    for section in order:
        for key in sorted(k for k in groups if k[0] == section):
            idx = np.array(groups[key])
            cells = []
            for name in names:
                v = verdict_sets[name][idx]
                if section == CLEAN:
                    review, flag = int((v.max(1) >= 1).sum()), int((v.max(1) >= 2).sum())
                    cells.append(f"{_cell(review, len(idx))} / {flag}")
                    summary[name][key[1]] = {"images": len(idx), "review_or_flag": review, "flag": flag}
                else:
                    k = LABELS.index(section)
                    found = int((v[:, k] >= 1).sum())
                    cells.append(_cell(found, len(idx)))
                    summary[name][f"{section}: {key[1]}"] = {"images": len(idx), "found": found,
                                                            "flagged": int((v[:, k] >= 2).sum())}
            label = section if section != CLEAN else f"{CLEAN} (review / flag)"
            lines.append(f"| {label} | {key[1]} | {len(idx)} | " + " | ".join(cells) + " |")
    for k, label in enumerate(LABELS):  # per class, all held-out sources together
        pos = holdout & (y[:, k] > 0)
        if pos.any():
            cells = [_cell(int((verdict_sets[n][pos, k] >= 1).sum()), int(pos.sum())) for n in names]
            lines.append(f"| **{label}** | **all held out** | {int(pos.sum())} | " + " | ".join(cells) + " |")
    return "\n".join(lines), summary


def cost_table(fitted: Sequence[FittedVariant]) -> str:
    lines = ["| variant | backbone ms/image (1 thread) | v3 ms/image (+ v2 31 ms) | v3 / v2 |", "|---|---:|---:|---:|"]
    for f in fitted:
        ms = BACKBONE_MS.get(f.variant.name, float("nan"))
        lines.append(f"| {f.variant.name} | {ms:.1f} | {ms + DETECTOR_MS:.1f} | {(ms + DETECTOR_MS) / DETECTOR_MS:.2f}x |")
    return "\n".join(lines)


def threshold_table(fitted: Sequence[FittedVariant]) -> str:
    lines = ["| variant | class | alone: review | alone: flag | v3: head review | v3: head flag (cal. precision) | "
             "v3: detector review | v3 false review (cal.) | v3 recall (cal.) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f in fitted:
        for a, c in zip(f.alone, f.fused):
            flag = "never" if c.head_flag is None else f"{c.head_flag:.3f} ({c.flag_precision:.2f})"
            recall = "-" if c.recall is None else f"{c.recall:.2f} of {c.positives}"
            lines.append(f"| {f.variant.name} | {c.label} | {a.head_review:.3f} | "
                         f"{'never' if a.head_flag is None else f'{a.head_flag:.3f}'} | {c.head_review:.3f} | {flag} | "
                         f"{c.detector_review:.3f} | {c.false_review_share:.3f} | {recall} |")
    return "\n".join(lines)


def plot_quality_per_ms(fitted: Sequence[FittedVariant], verdict_sets: dict[str, np.ndarray], holdout: np.ndarray,
                        y: np.ndarray, clean: dict[str, np.ndarray], path: Path) -> None:
    """Held-out found share per class, and clean photos sent to review (`clean`: title -> mask), against CPU ms."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [*LABELS, *clean]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), sharex=True)
    for ax, panel in zip(axes, panels):
        for kind, marker in (("head", "o"), ("v3", "s")):
            xs, ys = [], []
            for f in fitted:
                v = verdict_sets[f"{kind} {short(f.variant)}"]
                if panel in LABELS:
                    k = LABELS.index(panel)
                    pos = holdout & (y[:, k] > 0)
                    value = (v[pos, k] >= 1).mean() if pos.any() else np.nan
                else:
                    value = (v[clean[panel]].max(1) >= 1).mean() if clean[panel].any() else np.nan
                xs.append(BACKBONE_MS.get(f.variant.name, np.nan) + (DETECTOR_MS if kind == "v3" else 0))
                ys.append(value)
                ax.annotate(short(f.variant), (xs[-1], ys[-1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.plot(xs, ys, marker, label=kind)
        v2 = next(iter(verdict_sets.values()))
        if panel in LABELS:
            k = LABELS.index(panel)
            pos = holdout & (y[:, k] > 0)
            ax.plot([DETECTOR_MS], [(v2[pos, k] >= 1).mean() if pos.any() else np.nan], "k^", label="v2")
        elif clean[panel].any():
            ax.plot([DETECTOR_MS], [(v2[clean[panel]].max(1) >= 1).mean()], "k^", label="v2")
        ax.set_title(panel, fontsize=8)
        ax.set_xlabel("CPU ms / image")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out share")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("head-evaluate", help="image-level head variants vs the detector on held-out sources",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--variants", nargs="+", type=Variant.parse, default=list(VARIANTS))
    p.add_argument("--out", type=Path, required=True, help="where the tables, the plot and the candidate heads go")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from training.recipes.default_v3 import role_table

    served = served_detector(args.weights, args.detector)
    fitted: list[FittedVariant] = []
    for variant in args.variants:
        if not (args.run / variant.backbone / "meta.json").exists():
            print(f"{variant.name}: no {variant.backbone} features in {args.run}; skipped", file=sys.stderr)
            continue
        try:
            fitted.append(fit_variant(args.run, variant, args.shared, served, args.l2, args.budget, args.seed,
                                      not args.no_progress))
        except (CorruptFeatureCache, CacheMismatch, ValueError) as exc:
            print(f"head-evaluate: {variant.name}: {exc}", file=sys.stderr)
            return 2
    if not fitted:
        return 2
    common = set.intersection(*(set(f.data.sha256.tolist()) for f in fitted))
    fitted = [_restrict(f, common) for f in fitted]  # one set of photos for every column
    base = fitted[0]
    holdout = base.data.role("holdout")
    verdict_sets = systems(fitted, served)
    table, summary = held_out_table(base.data.rows, base.data.y, holdout, verdict_sets)
    args.out.mkdir(parents=True, exist_ok=True)
    sources = np.array([r.source for r in base.data.rows])
    clean = {"products sent to review": holdout & (sources == "products"),
             "other animals, pets, amphibians sent to review": holdout & np.isin(sources, ["animals", "amphibians"])}
    plot_quality_per_ms(fitted, verdict_sets, holdout, base.data.y, clean, args.out / "quality_per_ms.png")
    for f in fitted:
        metrics = {"held_out": summary[f"v3 {short(f.variant)}"], "head_alone": summary[f"head {short(f.variant)}"]}
        export_variant(f, args.out / f.variant.name.replace("/", "-"), "v3", args.budget, metrics=metrics)
    roles = role_table(base.data.rows, base.data.roles.tolist())
    text = "\n\n".join([
        f"# Image-level head: held-out evaluation ({len(common)} images with features of every variant)",
        f"Budget {args.budget:.1%} per class (calibration images without the class sent to review for it); "
        f"L2 {args.l2}; seed {args.seed}; detector {served.version}. Cells: found (REVIEW or FLAG for the class); "
        f"clean photos: sent to review or flagged / flagged (any class). Counts only below {COUNTS_BELOW} photos.",
        table, "## Thresholds (calibration role)", threshold_table(fitted), "## CPU per image", cost_table(fitted),
        "## Roles (images with features)", roles])
    (args.out / "heldout.md").write_text(text + "\n")
    (args.out / "heldout.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(text)
    return 0


def _restrict(f: FittedVariant, keys: set[str]) -> FittedVariant:
    """The variant on the photos of `keys` only, ordered by sha256 (so every variant lines up)."""
    from dataclasses import replace

    from training.imagelevel.dataset import HeadData

    d = f.data
    keep = np.flatnonzero([k in keys for k in d.sha256.tolist()])
    keep = keep[np.argsort(d.sha256[keep], kind="stable")]
    data = HeadData([d.rows[i] for i in keep], d.sha256[keep], d.roles[keep], d.y[keep], d.x[keep], d.uncached)
    return replace(f, data=data, scores=f.scores[keep], detector=f.detector[keep])
