"""A run folder's records, written by one step and read by the next.

    runs/<name>/
      wildscreen_run.json     `train`: the base model and its sha256, the data, the arguments, the versions
      weights/best.pt         Ultralytics' (last.pt to resume)
      weights/export.json     `export`: each exported file and how well it agreed with the .pt
      evaluation/             `evaluate`: metrics.json, plots, model_card.md

`evaluate`, `promote` and `compare` read what `train` and `export` wrote, through this module only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from training.layout import Dataset, image_classes

RUN_RECORD = "wildscreen_run.json"
AGREEMENT_FILE = "export.json"
"""Written beside the exported files (the .pt's folder): what promote puts into the manifest."""


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """The run's wildscreen_run.json; {} for a run without one (trained elsewhere)."""
    path = Path(run_dir) / RUN_RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def dataset_counts(data: Path) -> dict[str, Any]:
    """Images and boxes per split and class: what the model saw, for the run record and the card."""
    spec = yaml.safe_load(Path(data).read_text())
    dataset = Dataset(Path(spec["path"]))
    meta = dataset.read_meta()
    out = {}
    for split, members in dataset.read_splits().items():
        if members:
            per_class: dict[str, int] = {}
            for image in members:
                for k in image_classes(dataset, image, meta):
                    per_class[k] = per_class.get(k, 0) + 1
            out[split] = {"images": len(members), "images_with": dict(sorted(per_class.items()))}
    return out
