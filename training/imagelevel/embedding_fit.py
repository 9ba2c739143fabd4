"""`training embedding-fit`: known-image matching's embedding signal, from the head's cached features.

    python -m training embedding-fit --run /work/features-run --out runs/embedding          # fit, calibrate
    python -m training embedding-fit --run /work/features-run --out runs/embedding --attach v3 --weights weights

Two numbers make the signal (server.core.embedding): a projection and a threshold.
- The projection keeps the `--dim` main directions of the whole-image features of the photos the
  head *trains* on (roles of training/recipes/default_v3.py): enough to keep near copies close, small
  enough that a million bank entries fit in memory. Uncentred (an SVD of the features as they are, so
  the direction every photo shares is kept): measured on 80 other photos at the 10^-6 threshold,
  centring cost more than it gave (10% white borders matched 15% centred against 29% uncentred at
  128 numbers; crops of 20% 60% against 71%).
- The threshold is calibrated on other photos only (the calibration and held-out roles): every pair
  of photos from different groups (a group is a series: video frames, one shop, one museum
  department, one kind of animal) that are not near duplicates by pHash is an *unrelated* pair; the
  threshold is set so that at most `--false-match-rate` of those pairs (1 in 10^6 by default) reach
  it. Pairs within a series are left out because ../shared's series hold near copies its pHash does
  not catch (Caltech's repeated cougar faces, one shop's shots of one toy): counting them (`--all-pairs`)
  sets the threshold where crops no longer match (0.984 against 0.953 for v3). Photos of one series
  do come closer than that: matching treats a match by the embedding alone as a REVIEW, never a FLAG
  (server.core.matching). The closest unrelated pairs are printed: a look tells a duplicate in the
  data from a true false match.

`--attach VERSION` copies the projection into weights/ beside VERSION (which must have a head on the
same backbone) and names it in VERSION's manifest entry; a version's embedding is never replaced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from server.core.embedding import EmbeddingSpec, EmbeddingSignal
from server.core.errors import ModelError
from server.core.manifest import WeightsStore
from server.settings import HelpFormatter
from training.imagelevel.cache import CorruptFeatureCache, FeatureCache
from training.imagelevel.dataset import load_phashes, load_roles
from training.imagelevel.features import read_keyed_table
from training.imagelevel.sources import shared_data
from training.phash import DEFAULT_MAX_DISTANCE, hamming

NEAR_DUPLICATE_BITS = DEFAULT_MAX_DISTANCE
"""pHash bits within which two photos are the same photo (the roles' near-duplicate rule)."""
CLOSEST_SHOWN = 12


def fit_projection(features: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Uncentred PCA: (mean (zeros: kept in the file so that a centred one could load), components
    (F, dim), share of the features' energy kept)."""
    x = np.asarray(features, dtype=np.float64)
    mean = np.zeros(x.shape[1])
    _, singular, vt = np.linalg.svd(x, full_matrices=False)
    if dim > vt.shape[0]:
        raise ValueError(f"--dim {dim} is more than the {vt.shape[0]} photos or features to fit it on")
    kept = float((singular[:dim] ** 2).sum() / (singular ** 2).sum())
    return mean.astype(np.float32), vt[:dim].T.astype(np.float32), kept


def unrelated_pairs(vectors: np.ndarray, groups: np.ndarray | None, phashes: np.ndarray, keep: int = 4096,
                    block: int = 1024, progress: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """The `keep` most similar unrelated pairs (similarities descending, their (i, j)) and how many
    unrelated pairs there were. Unrelated: i < j, pHash more than NEAR_DUPLICATE_BITS apart and, given
    `groups`, in different groups."""
    n = len(vectors)
    group_ids = np.unique(groups, return_inverse=True)[1] if groups is not None else np.arange(n)
    best_s, best_ij, pairs = np.zeros(0, np.float32), np.zeros((0, 2), np.int64), 0
    for start in tqdm(range(0, n, block), desc="unrelated pairs", unit="block", disable=not progress):
        rows = np.arange(start, min(n, start + block))
        sims = vectors[rows] @ vectors.T
        related = (group_ids[rows, None] == group_ids[None, :]) | (np.arange(n)[None, :] <= rows[:, None])
        related |= hamming(phashes[rows], phashes) <= NEAR_DUPLICATE_BITS
        pairs += int((~related).sum())
        sims[related] = -np.inf
        flat = sims.ravel()
        top = np.argpartition(-flat, min(keep, len(flat) - 1))[:keep]
        top = top[np.isfinite(flat[top])]
        best_s = np.concatenate([best_s, flat[top]])
        best_ij = np.concatenate([best_ij, np.stack([rows[top // n], top % n], axis=1)])
        order = np.argsort(-best_s)[:keep]
        best_s, best_ij = best_s[order], best_ij[order]
    return best_s, best_ij, pairs


def threshold_for(top_similarities: np.ndarray, pairs: int, rate: float) -> tuple[float, int]:
    """The least threshold that at most `rate * pairs` unrelated pairs reach, and that count."""
    allowed = int(np.floor(rate * pairs))
    if allowed >= len(top_similarities):
        raise ValueError(f"keep more than {allowed} closest pairs to set a threshold at {rate:g} over {pairs:,} pairs")
    threshold = float(np.nextafter(np.float32(top_similarities[allowed]), np.float32(2)))
    return threshold, int((top_similarities >= threshold).sum())


def fit(run: Path, backbone: str, dim: int, rate: float, shared: Path | None, out: Path, progress: bool = True,
        all_pairs: bool = False) -> dict:
    """Fit and calibrate from `run`; writes `<out>/embedding.npz` and `<out>/embedding.json` (the manifest entry)."""
    root = shared_data(shared).parent  # load_roles wants ../shared itself (wildscan's roles come from there)
    rows, keys, roles, _ = load_roles(run, root, progress=progress)
    cache = FeatureCache.open(run / backbone)
    loaded = cache.load(keys=set(keys))
    index = loaded.index()
    phashes = load_phashes(run, read_keyed_table(run / "table.csv"), progress)
    seen: set[str] = set()
    picked = []
    for i, key in enumerate(keys):
        if key in index and key not in seen and roles[i] != "dropped":
            seen.add(key)
            picked.append(i)
    whole = loaded.whole[[index[keys[i]] for i in picked]].astype(np.float32)
    role = np.array([roles[i] for i in picked])
    train, other = role == "train", role != "train"
    mean, components, kept = fit_projection(whole[train], dim)
    name = f"{backbone}-pca{dim}-{hashlib.sha256(mean.tobytes() + components.tobytes()).hexdigest()[:8]}"
    spec = EmbeddingSpec("embedding.npz", "", name, backbone, cache.meta.get("weights_sha256", ""), dim, 0.0, {})
    vectors = EmbeddingSignal(spec, mean, components).embed(whole[other])
    groups = np.array([f"{rows[i].source}/{rows[i].group}" for i in picked])[other]
    top, pairs_ij, pairs = unrelated_pairs(vectors, None if all_pairs else groups,
                                           phashes[[picked[k] for k in np.flatnonzero(other)]], progress=progress)
    threshold, reaching = threshold_for(top, pairs, rate)
    other_rows = [rows[picked[k]] for k in np.flatnonzero(other)]
    closest = [{"similarity": round(float(s), 4), "a": str(other_rows[i].path), "b": str(other_rows[j].path)}
               for s, (i, j) in zip(top[:CLOSEST_SHOWN], pairs_ij[:CLOSEST_SHOWN])]
    entry = {"file": "embedding.npz", "sha256": "", "name": name, "backbone": backbone,
             "backbone_sha256": cache.meta.get("weights_sha256", ""), "dim": dim, "threshold": round(threshold, 6),
             "calibration": {"false_match_rate": rate, "unrelated_pairs": pairs, "pairs_reaching": reaching,
                             "photos": int(other.sum()), "groups": int(len(set(groups))),
                             "pairs_within_a_group": "counted" if all_pairs else "left out",
                             "highest_unrelated": round(float(top[0]), 4), "fit_photos": int(train.sum()),
                             "energy_kept": round(kept, 4), "closest": closest}}
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "embedding.npz", mean=mean, components=components)
    (out / "embedding.json").write_text(json.dumps(entry, indent=2) + "\n")
    return entry


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("embedding-fit", help="known-image matching's embedding signal: projection and threshold",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a features run (training.imagelevel.features --out)")
    p.add_argument("--out", type=Path, required=True, help="folder for embedding.npz and embedding.json")
    p.add_argument("--backbone", default="lite2", help="whose cached whole-image features (the head's backbone)")
    p.add_argument("--dim", type=int, default=128, help="numbers per embedding after the projection")
    p.add_argument("--false-match-rate", type=float, default=1e-6, help="share of unrelated pairs allowed to match")
    p.add_argument("--shared", type=Path, default=None, help="../shared (default: $WILDSCREEN_SHARED, else ../shared)")
    p.add_argument("--all-pairs", action="store_true",
                   help="count pairs within one group (a photo series, a shop) as unrelated too: a higher threshold, "
                        "fewer crops matched")
    p.add_argument("--attach", metavar="VERSION", help="then give this version in --weights the signal")
    p.add_argument("--weights", type=Path, default=Path("weights"))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        entry = fit(args.run, args.backbone, args.dim, args.false_match_rate, args.shared, args.out, not args.no_progress,
                    args.all_pairs)
    except (CorruptFeatureCache, OSError, ValueError) as exc:
        print(f"embedding-fit: {exc}", file=sys.stderr)
        return 2
    cal = entry["calibration"]
    print(f"{entry['name']}: {cal['fit_photos']} training photos' main directions keep {cal['energy_kept']:.1%} of the energy; "
          f"threshold {entry['threshold']:.4f} (cosine): {cal['pairs_reaching']} of {cal['unrelated_pairs']:,} unrelated pairs "
          f"of {cal['photos']} other photos in {cal['groups']} groups reach it (highest {cal['highest_unrelated']:.4f})")
    for pair in cal["closest"]:
        print(f"  {pair['similarity']:.4f}  {pair['a']}  ~  {pair['b']}")
    if args.attach:
        try:
            spec = WeightsStore(args.weights).add_embedding(args.attach, args.out / "embedding.npz", entry)
        except ModelError as exc:
            print(f"embedding-fit: {exc}", file=sys.stderr)
            return 2
        print(f"{args.attach} in {args.weights} matches by {spec.name} at {spec.threshold:.4f} ({spec.file})")
    return 0
