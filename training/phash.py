"""Perceptual hashes and near-duplicate clusters.

A 64-bit DCT hash (pHash) survives re-encoding, resizing and small crops, so two listing photos of
one object, or neighbouring video frames, land within a few bits of each other. Clusters of near
duplicates must never straddle train and test: that is leakage, and it inflates every metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from server.core.decoding import decode

DEFAULT_MAX_DISTANCE = 6
"""Hamming distance (of 64 bits) at or below which two images count as near duplicates."""

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def phash(image_bgr: np.ndarray) -> int:
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def hash_files(paths: Sequence[Path], desc: str = "hashing") -> np.ndarray:
    """uint64 pHash per file; 0 for files that cannot be decoded (reported by `check` separately)."""
    out = np.zeros(len(paths), dtype=np.uint64)
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", leave=False)):
        try:
            out[i] = phash(decode(Path(path).read_bytes(), min_side=64).pixels)
        except Exception:
            out[i] = 0
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = np.bitwise_xor(a[:, None], b[None, :])
    return _POPCOUNT[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1)


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE, chunk: int = 512) -> list[tuple[int, int, int]]:
    """(i, j, distance) for i < j with distance <= max_distance; images hashed 0 (unreadable) skipped."""
    pairs = []
    valid = hashes != 0
    for start in range(0, len(hashes), chunk):
        d = hamming(hashes[start : start + chunk], hashes)
        i, j = np.nonzero(d <= max_distance)
        i = i + start
        keep = (i < j) & valid[i] & valid[j]
        pairs.extend(zip(i[keep].tolist(), j[keep].tolist(), d[i[keep] - start, j[keep]].tolist()))
    return pairs


def clusters(n: int, pairs: Sequence[tuple[int, int, int]]) -> list[int]:
    """Connected components of the pairs (union-find): a cluster id per item."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return [find(i) for i in range(n)]
