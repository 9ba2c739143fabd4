"""The real photos the known-image tables use (../shared/data), decoded once: each one's PDQ hashes, what
a screen of it is matched by, its embedding, and what computing them cost."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.embeddings import Embedder
from server.core import pdq

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between every row of a (n, 32) and every row of b (m, 32): (n, m)."""
    out = np.zeros((len(a), len(b)), dtype=np.int32)
    for k in range(pdq.HASH_BYTES):
        out += POPCOUNT[a[:, k, None] ^ b[None, :, k]]
    return out


def photo_files(count: int, seed: int = 0) -> list[Path]:
    """`count` photo files of ../shared/data spread evenly over its folders, byte-identical copies
    dropped, then shuffled (so that any split of them mixes the folders)."""
    files = sorted(p for p in SHARED.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    seen, unique = set(), []
    for p in files[:: max(1, len(files) // (count + count // 10))]:
        digest = hashlib.sha256(p.read_bytes()).digest()
        if digest not in seen:
            seen.add(digest)
            unique.append(p)
    unique = unique[:count]
    np.random.default_rng(seed).shuffle(unique)
    return unique


@dataclass
class Photo:
    """One real photo: its dihedral hashes (a bank stores the first), what a screen of it is matched
    by (pdq.query_variants), its embedding, and its pixels where re-posts are made from it."""

    path: Path
    hashes: pdq.PdqDihedral
    variants: pdq.PdqDihedral
    vector: np.ndarray
    pixels: np.ndarray | None
    side: int
    """The longest side in pixels."""


@dataclass
class PhotoSet:
    """The photos that loaded out of `asked` files (`skipped` did not), and each step's ms per photo."""

    photos: list[Photo]
    asked: int
    skipped: int
    times_ms: dict[str, list[float]]

    @property
    def codes(self) -> np.ndarray:
        """(n, 32): each photo's hash, as banked."""
        return np.stack([p.hashes.as_array()[0] for p in self.photos])

    @property
    def vectors(self) -> np.ndarray:
        """(n, dim) float32: each photo's embedding."""
        return np.stack([p.vector for p in self.photos])


def load_photos(files: list[Path], embedder: Embedder, keep_pixels: bool) -> PhotoSet:
    """The files that decode and hash at quality >= 50 (the same photos for both signals), timed."""
    photos, skipped = [], 0
    times: dict[str, list[float]] = {"PDQ, 8 dihedral variants": [], "PDQ, query variants (served)": [],
                                     f"embedding ({embedder.runtime}, 1 thread)": []}
    for p in files:
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if im is None:
            skipped += 1
            continue
        hashes, t_hash = _timed(pdq.dihedral, im)
        variants, t_variants = _timed(pdq.query_variants, im)
        vector, t_vector = _timed(embedder.of_photo, p, im)
        if not hashes.usable:
            skipped += 1
            continue
        for times_of, ms in zip(times.values(), (t_hash, t_variants, t_vector)):
            times_of.append(ms)
        photos.append(Photo(p, hashes, variants, vector, im if keep_pixels else None, max(im.shape[:2])))
    return PhotoSet(photos, len(files), skipped, times)


def _timed(step, *args):
    start = time.perf_counter()
    out = step(*args)
    return out, (time.perf_counter() - start) * 1000
