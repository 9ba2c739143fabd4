"""The head for serving: `<version>.head.npz` and its manifest entry (the contract with server/).

The server computes, on the image it already decoded, the backbone's pooled features of the whole
image (`features: whole`, D = 1280) or concat([whole, max over the tiles of `tiles` grids with
`tile_overlap`]) (`whole+tilemax`, D = 2560), then `sigmoid(features @ weight.T + bias)`: one
score per class, in the order of `classes`, whose ids and labels are the taxonomy's. Nothing
else: no normalisation, no temperature. A class REVIEWs at `review_threshold`; it FLAGs from the
head alone only at a `flag_threshold`, which is null where calibration could not support one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from server.core.taxonomy import TAXONOMY

INPUT_SIZES = {"lite0": 224, "lite2": 260}


class HeadClassMismatch(ValueError):
    """The head's classes are not the taxonomy's (ids, labels or order)."""


def check_classes(labels: Sequence[str], weight_rows: int) -> None:
    """The head scores the taxonomy's classes, in id order, one weight row each; anything else is refused."""
    expected = [c.label for c in TAXONOMY]
    if list(labels) != expected:
        raise HeadClassMismatch(f"the head's classes {list(labels)} are not the taxonomy's {expected} "
                                "(ids 0..K-1 in this order): refit the head against server/core/taxonomy.py")
    if weight_rows != len(expected):
        raise HeadClassMismatch(f"the head has {weight_rows} weight rows for {len(expected)} taxonomy classes")


def write_head(out_dir: Path, version: str, weight: np.ndarray, bias: np.ndarray, *, labels: Sequence[str],
               review_thresholds: Sequence[float], flag_thresholds: Sequence[float | None], backbone: str,
               backbone_sha256: str, grids: Sequence[int], tile_overlap: float = 0.25,
               calibration: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `<out_dir>/<version>.head.npz` (weight (K, D), bias (K,), float32) and return its manifest entry."""
    weight, bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
    check_classes(labels, weight.shape[0])
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ValueError(f"weight {weight.shape} and bias {bias.shape} do not make a (K, D) head")
    if backbone not in INPUT_SIZES:
        raise ValueError(f"unknown backbone {backbone!r}; known: {', '.join(INPUT_SIZES)}")
    dim = 1280 * (2 if grids else 1)
    if weight.shape[1] != dim:
        raise ValueError(f"weight has {weight.shape[1]} columns; features "
                         f"{'whole+tilemax' if grids else 'whole'} have {dim}")
    for i, (r, f) in enumerate(zip(review_thresholds, flag_thresholds)):
        if not 0.0 <= r <= 1.0 or (f is not None and not r <= f <= 1.0):
            raise ValueError(f"class {labels[i]}: thresholds review {r}, flag {f} must satisfy 0 <= review <= flag <= 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{version}.head.npz"
    tmp = out_dir / f"{version}.head.tmp.npz"
    np.savez(tmp, weight=weight, bias=bias)
    os.replace(tmp, path)
    return {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "backbone": backbone,
        "backbone_sha256": backbone_sha256,
        "input_size": INPUT_SIZES[backbone],
        "features": "whole+tilemax" if grids else "whole",
        "tiles": list(grids),
        "tile_overlap": tile_overlap,
        "classes": [{"id": c.id, "label": c.label, "review_threshold": float(r),
                     "flag_threshold": None if f is None else float(f)}
                    for c, r, f in zip(TAXONOMY, review_thresholds, flag_thresholds)],
        "calibration": calibration or {},
        "metrics": metrics or {},
    }


def read_head(out_dir: Path, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The (weight, bias) an entry names, checked against its sha256 and the taxonomy."""
    path = out_dir / entry["file"]
    if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        raise ValueError(f"{path}: sha256 differs from the manifest entry's")
    with np.load(path, allow_pickle=False) as npz:
        weight, bias = npz["weight"], npz["bias"]
    check_classes([c["label"] for c in entry["classes"]], weight.shape[0])
    if [c["id"] for c in entry["classes"]] != [c.id for c in TAXONOMY]:
        raise HeadClassMismatch(f"class ids {[c['id'] for c in entry['classes']]} are not the taxonomy's")
    return weight, bias
