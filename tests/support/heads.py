"""Weights folders whose version carries an image-level head with fixed weights: answers fixed by
construction (a bias that puts one class far above or below its threshold), never by training."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from server.core.backbone import BACKBONES


def with_head(weights: Path, folder: Path, biases: dict[int, float], review: float = 0.5, flag: float | None = None,
              features: str = "whole", backbone: str = "lite0", classes: list[dict] | None = None,
              file_bytes: bytes | None = None) -> Path:
    """A copy of `weights` whose current version has a head: weight 0, `biases[class id]` (default -10),
    every class with the same thresholds. `classes` or `file_bytes` override what is written, for bad cases."""
    out = shutil.copytree(weights, folder / "weights")
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["versions"][manifest["current"]]
    ids = [c["id"] for c in entry["classes"]]
    spec = BACKBONES.get(backbone, BACKBONES["lite0"])  # an unknown name is written as it is, for the error
    dim = 1280 * (2 if features == "whole+tilemax" else 1)
    head_file = out / f"{entry['version']}.head.npz"
    if file_bytes is None:
        np.savez(head_file, weight=np.zeros((len(ids), dim), np.float32),
                 bias=np.array([biases.get(i, -10.0) for i in ids], np.float32))
    else:
        head_file.write_bytes(file_bytes)
    entry["head"] = {
        "file": head_file.name, "sha256": hashlib.sha256(head_file.read_bytes()).hexdigest(), "backbone": backbone,
        "backbone_sha256": hashlib.sha256(spec.weights_file().read_bytes()).hexdigest(), "input_size": spec.input_size,
        "features": features, "tiles": [2] if features != "whole" else [], "tile_overlap": 0.25,
        "classes": classes if classes is not None else [
            {"id": c["id"], "label": c["label"], "review_threshold": review, "flag_threshold": flag} for c in entry["classes"]],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


REPO_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def with_embedding(weights: Path, source_version: str = "v3") -> Path:
    """`weights` (a folder from `with_head` with backbone lite2) whose current version gets the
    repository's committed embedding signal of `source_version` (the projection file and threshold
    as fitted, never refitted here), through the same WeightsStore call `embedding-fit --attach` makes."""
    from server.core.manifest import WeightsStore

    repo = WeightsStore(REPO_WEIGHTS)
    spec = repo.get(source_version).embedding_spec
    store = WeightsStore(weights)
    store.add_embedding(store.current_version(), repo.verified_path(spec.file, spec.sha256), spec.to_dict())
    return weights
