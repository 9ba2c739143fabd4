"""Held-out wildscan photos of ivory, pangolins and tigers by type (live animal vs product), at the
review thresholds a `training evaluate` metrics.json calibrated: issue 15's targets split them, the
split tables do not.

    .venv/bin/python training/recipes/wildscan_by_type.py MODEL METRICS_JSON [SHARED]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from server.core.taxonomy import LABELS
from training.recipes.default_v2 import PRODUCT_CLASSES, wildscan_rows
from training.modelfile import candidate_engine, detect_in_files


def by_type(model: Path, metrics: dict, shared: Path) -> dict[tuple[str, str], list]:
    review = {k: v["review_threshold"] for k, v in metrics["thresholds"].items()}
    rows = [r for r in wildscan_rows(shared, 0) if r["role"] == "holdout" and r["class"] in PRODUCT_CLASSES]
    root = shared / "data" / "wildscan"
    out: dict[tuple[str, str], list] = {}
    engine = candidate_engine(model, "cpu")
    for r, (_, _, d) in zip(rows, detect_in_files(engine, [root / r["file"] for r in rows], 0.01, 8, "scoring")):
        c = LABELS.index(r["class"])
        score = float(d.confidence[d.class_id == c].max()) if (d.class_id == c).any() else 0.0
        sent = any(float(s) >= review[LABELS[int(k)]] for k, s in zip(d.class_id, d.confidence))
        entry = out.setdefault((r["class"], r["type"]), [0, 0, 0, []])
        entry[0] += 1
        entry[1] += score >= review[r["class"]]
        entry[2] += sent
        entry[3].append(f"{Path(r['file']).name[:28]}:{score:.2f}")
    return out


def main() -> None:
    model, metrics = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    shared = Path(sys.argv[3] if len(sys.argv) > 3 else os.environ.get("WILDSCREEN_SHARED", "../shared"))
    for (label, kind), (n, found, sent, scores) in sorted(by_type(model, metrics, shared).items()):
        print(f"{label:16} {kind:8} images {n}  class found {found}/{n}  review-or-flag {sent}/{n}  {scores}")


if __name__ == "__main__":
    main()
