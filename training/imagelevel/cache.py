"""Backbone features cached by image sha256, in npz shards beside the run.

Refitting the image-level head after a new reviewer export or a new seizure folder must take
seconds to minutes on a CPU, so the expensive part (the backbone over every photo, whole and
tiles) is done once per image *content*: the key is the file's sha256, so a renamed or duplicated
photo costs nothing.

Layout of one backbone's cache (e.g. `runs/features/lite0/`):
- `meta.json`: backbone, input size, weights sha256, tile grids and overlap, feature size. A
  cache is only extended by the same backbone and tiles; anything else is refused.
- `shard-00000.npz`, ...: `sha256` (N,), `whole` (N, C) and `tiles` (N, T, C), float16.
  Shards are written to a temporary name and renamed, so a killed run never leaves half a shard
  that looks whole; a leftover `*.tmp` is deleted on the next open.
A damaged shard raises `CorruptFeatureCache` naming the file: delete it and rerun, its images are
recomputed.
"""

from __future__ import annotations

import fcntl
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

SHARD_GLOB = "shard-*.npz"


class CorruptFeatureCache(ValueError):
    """A cache file that cannot be read or does not fit its `meta.json`."""


class CacheMismatch(ValueError):
    """The cache was written by another backbone or other tiles than the ones asked for."""


@dataclass(frozen=True)
class CachedFeatures:
    sha256: np.ndarray
    """(N,) hex digests, unique."""
    whole: np.ndarray
    """(N, C) float16."""
    tiles: np.ndarray
    """(N, T, C) float16."""

    def index(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.sha256.tolist())}


class FeatureCache:
    """One backbone's shards under `root`; `open` checks (or writes) `meta.json` and takes a lock."""

    def __init__(self, root: Path, meta: dict[str, Any]):
        self.root = root
        self.meta = meta
        self._lock_fd: int | None = None

    @classmethod
    def open(cls, root: Path, meta: dict[str, Any] | None = None, lock: bool = False) -> FeatureCache:
        """Open the cache at `root`: with `meta`, create it or refuse a different one; `lock` for writers."""
        if meta is not None:
            meta = json.loads(json.dumps(meta))  # tuples become lists, as they come back from the file
            root.mkdir(parents=True, exist_ok=True)
        meta_path = root / "meta.json"
        if meta_path.exists():
            try:
                stored = json.loads(meta_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CorruptFeatureCache(
                    f"{meta_path}: not valid JSON ({exc}); delete the cache folder to rebuild it") from None
            if meta is not None and stored != meta:
                diff = {k: (stored.get(k), meta.get(k))
                        for k in sorted(set(stored) | set(meta)) if stored.get(k) != meta.get(k)}
                raise CacheMismatch(f"{root} holds features of another setup (stored, asked): {diff}; "
                                    "use another folder or delete this one")
            meta = stored
        elif meta is None:
            raise FileNotFoundError(
                f"no feature cache at {root} (no meta.json): run `python -m training.imagelevel.features`")
        else:
            _write_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True).encode())
        cache = cls(root, meta)
        if lock:
            cache._take_lock()
            for stale in root.glob("*.tmp"):
                stale.unlink()
        return cache

    def _take_lock(self) -> None:
        fd = os.open(self.root / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"another extraction is writing to {self.root}; wait for it or stop it") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    @property
    def feature_dim(self) -> int:
        return int(self.meta["feature_dim"])

    @property
    def tile_count(self) -> int:
        return int(self.meta["tile_count"])

    def shards(self) -> list[Path]:
        return sorted(self.root.glob(SHARD_GLOB))

    def cached_keys(self) -> set[str]:
        """The sha256s already cached (reads only the key arrays)."""
        keys: set[str] = set()
        for path in self.shards():
            keys.update(self._read(path, ("sha256",))["sha256"].tolist())
        return keys

    def write_shard(self, sha256: Iterable[str], whole: np.ndarray, tiles: np.ndarray) -> Path:
        """Add one shard, atomically (temporary name, then rename)."""
        keys = np.asarray(list(sha256), dtype="<U64")
        whole, tiles = whole.astype(np.float16), tiles.astype(np.float16)
        expected_tiles = (len(keys), self.tile_count, self.feature_dim)
        if whole.shape != (len(keys), self.feature_dim) or tiles.shape != expected_tiles:
            raise ValueError(f"shard arrays {whole.shape}, {tiles.shape} do not fit {len(keys)} keys and {self.meta}")
        existing = self.shards()
        number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        path = self.root / f"shard-{number:05d}.npz"
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, sha256=keys, whole=whole, tiles=tiles)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def load(self, keys: Iterable[str] | None = None) -> CachedFeatures:
        """All cached features, or those of `keys` (missing keys are simply absent; check `index()`)."""
        wanted = set(keys) if keys is not None else None
        parts: list[dict[str, np.ndarray]] = []
        for path in self.shards():
            arrays = self._read(path, ("sha256", "whole", "tiles"))
            if wanted is not None:
                mask = np.isin(arrays["sha256"], list(wanted))
                arrays = {k: v[mask] for k, v in arrays.items()}
            parts.append(arrays)
        if not parts:
            return CachedFeatures(np.empty(0, "<U64"), np.empty((0, self.feature_dim), np.float16),
                                  np.empty((0, self.tile_count, self.feature_dim), np.float16))
        sha = np.concatenate([p["sha256"] for p in parts])
        _, first = np.unique(sha, return_index=True)  # a key written twice (two runs) keeps its first copy
        first.sort()
        return CachedFeatures(sha[first], np.concatenate([p["whole"] for p in parts])[first],
                              np.concatenate([p["tiles"] for p in parts])[first])

    def _read(self, path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in names}
        except KeyError as exc:
            raise CorruptFeatureCache(f"feature cache file {path} lacks the array {exc}; delete it and rerun "
                                      "the extraction to recompute its images") from None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise CorruptFeatureCache(f"feature cache file {path} is corrupt or truncated ({type(exc).__name__}: "
                                      f"{exc}); delete it and rerun the extraction to recompute its images") from None
        n = len(arrays["sha256"])
        shapes = {"whole": (n, self.feature_dim), "tiles": (n, self.tile_count, self.feature_dim)}
        for name, array in arrays.items():
            if name in shapes and array.shape != shapes[name]:
                raise CorruptFeatureCache(f"feature cache file {path}: {name} has shape {array.shape}, expected "
                                          f"{shapes[name]} from meta.json; delete it and rerun the extraction")
        return arrays


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
