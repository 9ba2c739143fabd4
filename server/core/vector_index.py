"""The faiss index behind the embedding signal: which one for a bank's size, and the one query
matching needs ("every banked vector at least this similar to this one").

    flat   IndexFlatIP: the query against every vector (inner product = cosine on unit vectors);
           exact, no build cost. Chosen up to FLAT_MAX_ENTRIES.
    ivf    IndexIVFScalarQuantizer (float16): the vectors clustered into cells by k-means on a
           sample, a query scans the NPROBE cells nearest it. A near copy sits next to its original,
           in one of the nearest cells: measured (bench/false_matches.py) at 1M entries, 16 cells
           found 99.56% of the re-posts the exact cosine matches, the misses' originals ranked 17th
           to 51st, and one 8-bit code clipped a component; so 64 cells and float16 codes (2 bytes
           a number: 256 MB at 1M entries of 128), about 1 ms a lookup at 1M.

The indexes are immutable once built: matching builds a new one and swaps it in (server.core.matching),
and faiss allows concurrent searches on one index.
"""

from __future__ import annotations

import numpy as np

FLAT, IVF = "flat", "ivf"
KINDS = (FLAT, IVF)
FLAT_MAX_ENTRIES = 20_000
"""Past it, the IVF index (bench/known_images.py measures both)."""
NPROBE = 64
TRAIN_SAMPLE = 65_536
ADD_CHUNK = 131_072


def kind_for(entries: int) -> str:
    return FLAT if entries <= FLAT_MAX_ENTRIES else IVF


def cells_for(entries: int) -> int:
    """About 4 sqrt(n) cells (faiss's rule of thumb), at least 64, and few enough that k-means has
    the 39 training points a cell it asks for."""
    return max(64, min(int(4 * np.sqrt(entries)), min(entries, TRAIN_SAMPLE) // 39))


def build(vectors: np.ndarray, kind: str | None = None):
    """A faiss index over (n, dim) unit vectors (float16 or float32, added a chunk at a time so that
    a bank of float16 rows is never copied whole to float32); row i is faiss id i."""
    import faiss

    if vectors.ndim != 2:
        raise ValueError(f"vectors are (n, dim), not {vectors.shape}")
    dim = vectors.shape[1]
    kind = kind or kind_for(len(vectors))
    if kind == FLAT:
        index = faiss.IndexFlatIP(dim)
    elif kind == IVF:
        index = trained_ivf(vectors, len(vectors))
    else:
        raise ValueError(f"vector index kind is one of {', '.join(KINDS)}, not {kind!r}")
    for start in range(0, len(vectors), ADD_CHUNK):
        index.add(np.ascontiguousarray(vectors[start:start + ADD_CHUNK], dtype=np.float32))
    return index


def trained_ivf(vectors: np.ndarray, entries: int):
    """The IVF index for a bank of `entries` vectors, its cells trained on a sample of `vectors`,
    empty: `build` fills it, and a benchmark that generates its vectors adds them a chunk at a time."""
    import faiss

    dim = vectors.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, cells_for(entries), faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT)
    sample = vectors[np.random.default_rng(0).permutation(len(vectors))[:TRAIN_SAMPLE]]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.nprobe = NPROBE
    return index


def at_least(index, queries: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query row, index row, similarity) with similarity >= threshold."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if index.ntotal == 0 or len(queries) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    # faiss keeps inner products above the radius; nudge it down so that "at least" holds exactly.
    limits, similarities, rows = index.range_search(queries, float(np.nextafter(np.float32(threshold), np.float32(-2))))
    query_rows = np.repeat(np.arange(len(queries)), np.diff(limits.astype(np.int64)))
    keep = similarities >= threshold
    return query_rows[keep].astype(np.int64), rows[keep].astype(np.int64), similarities[keep].astype(np.float32)
