"""The head's data: a run's labelled table, v3's roles, and each variant's feature matrix.

A *variant* is a backbone plus how its cached features are pooled into one vector per image:
`whole` (the whole image's pooled features, D = 1280) or `whole+tilemax` (concat of the whole
image's and the element-wise max over the tiles of some grids, D = 2560). The max over tiles
lets a small object in one corner count as much as a filled frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from server.core.taxonomy import LABELS
from training.imagelevel.cache import FeatureCache
from training.imagelevel.features import read_keyed_table
from training.imagelevel.sources import LabelledImage
from training.recipes.default_v3 import DROPPED, assign_roles, drop_near_duplicates


@dataclass(frozen=True)
class Variant:
    backbone: str
    """lite0 or lite2: a folder of the run."""
    grids: tuple[int, ...]
    """Tile grids pooled by max beside the whole image; () for the whole image only."""

    @property
    def name(self) -> str:
        return f"{self.backbone}/" + "+".join(["whole", *(f"{g}x{g}" for g in self.grids)])

    @property
    def features(self) -> str:
        """The manifest's name for the pooling: `whole` or `whole+tilemax`."""
        return "whole+tilemax" if self.grids else "whole"

    @classmethod
    def parse(cls, text: str) -> Variant:
        """`lite0/whole`, `lite0/whole+2x2`, `lite0/whole+2x2+3x3`, ..."""
        backbone, _, pooling = text.partition("/")
        parts = pooling.split("+") if pooling else ["whole"]
        if parts[0] != "whole" or any(not (p[:-2].isdigit() and p[-2:] == f"x{p[:-2]}") for p in parts[1:]):
            raise ValueError(f"variant {text!r}: expected backbone/whole[+NxN...], e.g. lite0/whole+2x2")
        return cls(backbone, tuple(int(p.split("x")[0]) for p in parts[1:]))


VARIANTS = tuple(Variant.parse(v) for v in
                 ("lite0/whole", "lite0/whole+2x2", "lite0/whole+2x2+3x3", "lite2/whole", "lite2/whole+2x2"))


@dataclass(frozen=True)
class HeadData:
    """One row per distinct labelled image with cached features (and not dropped)."""

    rows: list[LabelledImage]
    sha256: np.ndarray
    roles: np.ndarray
    """(N,) train, calibration or holdout."""
    y: np.ndarray
    """(N, K) 0/1, K = the taxonomy's classes in id order."""
    x: np.ndarray
    """(N, D) float32 pooled features."""
    uncached: int = 0
    """Distinct photos of the table left out because the cache has no features for them (yet)."""

    def role(self, name: str) -> np.ndarray:
        return self.roles == name


def tile_columns(meta: dict, grids: Sequence[int]) -> list[int]:
    """Which of the cache's tiles belong to `grids` (tiles are stored grid after grid, row-major)."""
    cached = list(meta["tile_grids"])
    missing = [g for g in grids if g not in cached]
    if missing:
        raise ValueError(f"the cache holds tiles of grids {cached}, not {missing}: extract them or pick another variant")
    columns, start = [], 0
    for g in cached:
        if g in grids:
            columns.extend(range(start, start + g * g))
        start += g * g
    return columns


def pool(whole: np.ndarray, tiles: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """`whole` or concat([whole, max over the chosen tiles]), float32; the serving side does the same."""
    whole = whole.astype(np.float32)
    if not columns:
        return whole
    return np.concatenate([whole, tiles[:, list(columns)].astype(np.float32).max(axis=1)], axis=1)


def label_matrix(rows: Sequence[LabelledImage]) -> np.ndarray:
    y = np.zeros((len(rows), len(LABELS)), np.float32)
    for i, r in enumerate(rows):
        for label in r.labels:
            y[i, LABELS.index(label)] = 1
    return y


def load_phashes(run: Path, keyed: Sequence[tuple[LabelledImage, str]], progress: bool = True) -> np.ndarray:
    """pHash per row, cached in `<run>/phash.npz` by sha256 (computed once, resumable by rerunning)."""
    from training.phash import hash_files

    path = run / "phash.npz"
    known: dict[str, int] = {}
    if path.exists():
        with np.load(path) as npz:
            known = dict(zip(npz["sha256"].tolist(), npz["phash"].tolist()))
    todo = {key: row.path for row, key in keyed if key not in known}
    if todo:
        keys = list(todo)
        hashes = hash_files([todo[k] for k in keys], desc="phash") if progress else hash_files([todo[k] for k in keys])
        known.update(zip(keys, hashes.tolist()))
        tmp = path.with_name("phash.tmp.npz")
        np.savez(tmp, sha256=np.array(list(known), "<U64"), phash=np.array(list(known.values()), np.uint64))
        tmp.replace(path)
    return np.array([known[key] for _, key in keyed], np.uint64)


def load_roles(run: Path, shared: Path, seed: int = 0, progress: bool = True) \
        -> tuple[list[LabelledImage], list[str], list[str], int]:
    """(rows, sha256s, roles, near duplicates dropped) for every row of `<run>/table.csv`."""
    keyed = read_keyed_table(run / "table.csv")
    rows, roles = assign_roles([r for r, _ in keyed], shared, seed)
    roles, dropped = drop_near_duplicates(roles, load_phashes(run, keyed, progress))
    return rows, [key for _, key in keyed], roles, dropped


def load_head_data(run: Path, variant: Variant, shared: Path, seed: int = 0, progress: bool = True) \
        -> tuple[HeadData, dict]:
    """The variant's features for every distinct, non-dropped image cached so far, and the cache's meta.

    Images not cached yet are left out (a run still extracting can be fitted on what it has); a
    damaged shard raises `CorruptFeatureCache` naming the file."""
    rows, keys, roles, _ = load_roles(run, shared, seed, progress)
    cache = FeatureCache.open(run / variant.backbone)
    columns = tile_columns(cache.meta, variant.grids)
    seen: set[str] = set()
    keep = []
    for i, (key, role) in enumerate(zip(keys, roles)):
        if role != DROPPED and key not in seen:
            seen.add(key)
            keep.append(i)
    loaded = cache.load(keys=[keys[i] for i in keep])
    index = loaded.index()
    uncached = sum(1 for i in keep if keys[i] not in index)
    keep = [i for i in keep if keys[i] in index]
    at = np.array([index[keys[i]] for i in keep], dtype=np.int64)
    x = np.concatenate([pool(loaded.whole[c], loaded.tiles[c], columns)
                        for c in tqdm(np.array_split(at, max(1, len(at) // 1024)), desc=f"{variant.name} pool",
                                      unit="chunk", disable=not progress, leave=False)]) if len(at) else \
        np.zeros((0, cache.feature_dim * (2 if columns else 1)), np.float32)
    kept_rows = [rows[i] for i in keep]
    data = HeadData(kept_rows, np.array([keys[i] for i in keep]), np.array([roles[i] for i in keep]),
                    label_matrix(kept_rows), x, uncached)
    return data, cache.meta
