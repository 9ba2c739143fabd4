"""`training compare`: one table for several evaluated runs, so that a choice of base, freezing,
input size or data is made on held-out sources and shown, not remembered.

Reads each run's `wildscreen_run.json` (what was trained, on what) and `evaluation/metrics.json`
(what `training evaluate` measured); writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from training.runs import RUN_RECORD
from server.settings import HelpFormatter

# The held-out sources a comparison is decided on (training/recipes/default_v2.py holds them out).
PRODUCTS = "products-heldout"
REPTILE_SOURCES = ("reptiles-chameleon", "reptiles-more-heldout")


@dataclass(frozen=True)
class Column:
    title: str
    value: Callable[[dict, dict], float | str | None]
    higher_is_better: bool | None = None  # None: a description, not a score


def _train_images(record: dict) -> str:
    spec_path = Path(record["ultralytics_args"]["data"])
    spec = yaml.safe_load(spec_path.read_text())
    listing = Path(spec["train"]) if Path(spec["train"]).is_absolute() else Path(spec.get("path", spec_path.parent)) / spec["train"]
    if not listing.is_file():
        return "?"
    lines = [line for line in listing.read_text().splitlines() if line.strip()]
    return f"{len(lines)} ({sum('/composites/' in line for line in lines)})"


def _source(metrics: dict, source: str, key: str) -> float | None:
    return metrics["image_level"]["holdout"]["by_source"].get(source, {}).get(key)


def _option(name: str) -> Callable[[dict, dict], str]:
    return lambda record, _: str(record["options"].get(name) if record["options"].get(name) is not None else "no")


COLUMNS = (
    Column("base", lambda r, _: Path(r["options"]["model"]).stem),
    Column("frozen", _option("freeze")),
    Column("px", _option("imgsz")),
    Column("epochs", _option("epochs")),
    Column("other", lambda r, _: " ".join(f"{k}={v}" for k, v in r["options"].get("overrides", {}).items()) or "-"),
    Column("train images (composites)", lambda r, _: _train_images(r)),
    Column("test AP50", lambda _, m: m["detection"]["all"]["ap50"], True),
    Column("held-out clean flagged", lambda _, m: m["image_level"]["holdout"]["clean"]["flag_rate"], False),
    Column("held-out products review/flag", lambda _, m: _source(m, PRODUCTS, "review_or_flag_rate"), False),
    Column("held-out products flagged", lambda _, m: _source(m, PRODUCTS, "flag_rate"), False),
    Column("held-out reptiles found", lambda _, m: m["image_level"]["holdout"]["per_class"]["live_reptile"]["class_recall_at_review"], True),
    *(Column(f"{s} found", lambda _, m, s=s: _source(m, s, "class_found_rate"), True) for s in REPTILE_SOURCES),
    Column("wildscan-heldout found", lambda _, m: _source(m, "wildscan-heldout", "class_found_rate"), True),
)


def load_run(run: Path) -> tuple[dict, dict]:
    record_path, metrics_path = run / RUN_RECORD, run / "evaluation" / "metrics.json"
    for path in (record_path, metrics_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: train the run with `training train` and evaluate it with `training evaluate --out {run}/evaluation`")
    return json.loads(record_path.read_text()), json.loads(metrics_path.read_text())["metrics"]


def table(runs: list[Path]) -> str:
    """A Markdown table, one row per run; the best score of each column in bold."""
    rows = [(run.name, [column.value(*load_run(run)) for column in COLUMNS]) for run in runs]
    best: dict[int, float] = {}
    for i, column in enumerate(COLUMNS):
        scores = [values[i] for _, values in rows if isinstance(values[i], float)]
        if column.higher_is_better is not None and len(scores) > 1:
            best[i] = max(scores) if column.higher_is_better else min(scores)

    def cell(i: int, value: float | str | None) -> str:
        if value is None:
            return "-"
        if not isinstance(value, float):
            return value
        text = f"{value:.3f}" if COLUMNS[i].title == "test AP50" else f"{value:.1%}"
        return f"**{text}**" if best.get(i) == value else text

    lines = ["| run | " + " | ".join(c.title for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(i, v) for i, v in enumerate(values)) + " |" for name, values in rows]
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        print(table(args.runs))
    except FileNotFoundError as missing:
        print(f"compare: {missing}", file=sys.stderr)
        return 2
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="one table of several evaluated runs, scored on the held-out sources",
                       formatter_class=HelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="run folders, each with wildscreen_run.json and evaluation/metrics.json")
    p.set_defaults(handler=cmd_compare)
