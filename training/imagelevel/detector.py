"""`training head-detector`: the served detector's per-class best confidence on the head's photos.

v3 fuses the detector with the head, so thresholds for both must be set on the same calibration
photos and both judged on the same held-out ones. This runs a promoted detector (by default v2,
through the serving engine: the server's decode, letterbox, ONNX Runtime and NMS) over the
calibration and holdout roles and caches, per image sha256, the highest confidence of each class
(0 where the class has no box above the floor) in `<run>/detector-<version>.npz`. Resumable:
rerun the same command and only the images not scored yet are run; a cache of another model file
is refused.

    python -m training head-detector --run /work/features-run --version v2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Mapping

import numpy as np
from tqdm import tqdm

from server.core.taxonomy import LABELS

FLOOR = 0.005
"""The NMS confidence floor: far below any review threshold, so every score that could matter is kept."""


class DetectorCacheMismatch(ValueError):
    """The cache holds another model's scores."""


def _engine(weights: Path, version: str, threads: int):
    from server.core.backends import OnnxBackend, TorchBackend
    from server.core.engine import InferenceEngine
    from server.core.manifest import WeightsStore

    manifest = WeightsStore(weights).get(version)
    onnx = manifest.exports["onnx"].file if "onnx" in manifest.exports else f"{version}.onnx"
    if (weights / onnx).exists():
        backend = OnnxBackend(weights / onnx, threads)
    else:
        import torch
        torch.set_num_threads(threads)
        backend = TorchBackend(weights / manifest.file, torch.device("cpu"))
    return InferenceEngine(manifest, backend), manifest


def load_scores(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """sha256 -> (K,) best confidence per taxonomy class, and the cache's facts (model, sha256, floor)."""
    if not path.exists():
        return {}, {}
    with np.load(path, allow_pickle=False) as npz:
        meta = {k: str(npz[k]) for k in ("version", "model_sha256", "floor")}
        return dict(zip(npz["sha256"].tolist(), npz["scores"])), meta


def _save(path: Path, scores: Mapping[str, np.ndarray], meta: dict) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, sha256=np.array(list(scores), "<U64"), scores=np.stack(list(scores.values())).astype(np.float32),
             **{k: np.array(str(v)) for k, v in meta.items()})
    os.replace(tmp, path)


def score_images(images: Mapping[str, Path], weights: Path, version: str, out: Path, batch: int = 8,
                 threads: int = 1, flush_every: int = 32, progress: bool = True) -> dict[str, np.ndarray]:
    """Best confidence per class of every `sha256 -> path`, cached in `out` (resumable); NaN where undecodable."""
    from server.core.decoding import ImageDecoder

    engine, manifest = _engine(weights, version, threads)
    meta = {"version": manifest.version, "model_sha256": manifest.sha256, "floor": FLOOR}
    scores, stored = load_scores(out)
    if stored and stored["model_sha256"] != manifest.sha256:
        raise DetectorCacheMismatch(f"{out} holds scores of {stored['version']} ({stored['model_sha256'][:12]}), "
                                    f"not of {version} ({manifest.sha256[:12]}): use another file or delete it")
    todo = [(k, p) for k, p in images.items() if k not in scores]
    decoder = ImageDecoder(engine.input_size, engine.backend.device)
    column = {c.id: LABELS.index(c.label) for c in manifest.classes}
    for n, start in enumerate(tqdm(range(0, len(todo), batch), desc=f"{version} detector", unit="batch",
                                   disable=not progress)):
        chunk = todo[start:start + batch]
        prepared, keys = [], []
        for key, path in chunk:
            try:
                prepared.append(decoder.prepare(path.read_bytes())[1])
                keys.append(key)
            except Exception:  # an undecodable file is reported as NaN scores, not a failed run
                scores[key] = np.full(len(LABELS), np.nan, np.float32)
        for key, found in zip(keys, engine.run(prepared, FLOOR)):
            row = np.full(len(LABELS), np.nan if isinstance(found, Exception) else 0.0, np.float32)
            if not isinstance(found, Exception):
                for cls, conf in zip(found.class_id.tolist(), found.confidence.tolist()):
                    row[column[cls]] = max(row[column[cls]], conf)
            scores[key] = row
        if (n + 1) % flush_every == 0:
            _save(out, scores, meta)
    if todo or not out.exists():
        _save(out, scores, meta)
    return scores


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("head-detector", help="cache a promoted detector's per-class scores on the head's photos",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="the features run (table.csv)")
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("WILDSCREEN_SHARED", "../shared")),
                   help="../shared, for wildscan's v2 roles (default: $WILDSCREEN_SHARED, else ../shared)")
    p.add_argument("--weights", type=Path, default=Path("weights"))
    p.add_argument("--version", default="v2")
    p.add_argument("--roles", nargs="+", default=["calibration", "holdout"], choices=["train", "calibration", "holdout"])
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1: leave cores to others)")
    p.add_argument("--batch", type=int, default=8)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from training.imagelevel.dataset import load_roles

    rows, keys, roles, _ = load_roles(args.run, args.shared)
    images = {key: row.path for row, key, role in zip(rows, keys, roles) if role in args.roles}
    out = args.run / f"detector-{args.version}.npz"
    scores = score_images(images, args.weights, args.version, out, args.batch, args.threads)
    failed = sum(1 for k in images if np.isnan(scores[k]).any())
    print(f"{args.version}: {len(images)} images of roles {', '.join(args.roles)} scored into {out} ({failed} undecodable)")
    return 0
