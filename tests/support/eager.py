"""A weights/ folder that asks for a person about everything: the untrained model with its review
thresholds at their lowest, so that by construction every image with any detection is REVIEW
(never FLAG: flag thresholds at 1). For tests of what reaches the review queue."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def eager_weights(untrained_weights: Path, folder: Path) -> Path:
    weights = shutil.copytree(untrained_weights, folder / "weights")
    manifest = json.loads((weights / "manifest.json").read_text())
    for version in manifest["versions"].values():
        version["default_min_confidence"] = 1e-6
        for cls in version["classes"]:
            cls["review_threshold"], cls["flag_threshold"] = 1e-6, 1.0
    (weights / "manifest.json").write_text(json.dumps(manifest))
    return weights
