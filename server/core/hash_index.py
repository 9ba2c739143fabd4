"""The faiss binary index behind known-image matching: which one for a bank's size, and the one query
matching needs ("every banked hash within 31 bits of these").

    flat        IndexBinaryFlat: compares a query with every code (popcount of 32 bytes); exact, no
                build cost, 32 bytes an entry. Chosen up to FLAT_MAX_ENTRIES.
    multihash   IndexBinaryMultiHash, multi-index hashing (Norouzi et al.; threatexchange's PDQ index
                is the same): the 256 bits cut into 16 words of 16 bits, each word a hash table; a
                query probes its 16 words with up to one bit flipped (nflip 1). Two hashes within 31
                bits agree on some word to at most one bit (pigeonhole: 16 words x 2 bits > 31), so
                the answer is exact, like the flat index's, at a fraction of the comparisons.
    hnsw        IndexBinaryHNSW: a graph, approximate (k nearest, then the threshold). Measured beside
                the others in bench/hashes.py; never chosen by `kind_for`.

FLAT_MAX_ENTRIES is measured (bench/hashes.py, 2 shared cores, faiss 1.15.1 on one thread, random
hashes, 8 variants an image): flat 0.42 ms/image at 100k, 9.9 at 1M, 119 at 10M; multi-index hashing
0.83 at 100k and 13.5 at 1M (faiss's nflip=1 probing costs 36x nflip=0), 250 MB at 1M (so ~2.5 GB at
10M), 4.4 s to build; HNSW 0.53 ms at 100k but 96% recall and 9 s to build. The flat index wins up to
a few million entries; past FLAT_MAX_ENTRIES the flat scan passes ~20 ms an image and multi-index
hashing should win, memory allowing (extrapolated: not run at 10M here).

The indexes are immutable once built: matching builds a new one and swaps it in
(server.core.matching), and faiss allows concurrent searches on one index.
"""

from __future__ import annotations

import numpy as np

from server.core.pdq import HASH_BITS, HASH_BYTES, MATCH_DISTANCE

FLAT, MULTIHASH, HNSW = "flat", "multihash", "hnsw"
KINDS = (FLAT, MULTIHASH, HNSW)
FLAT_MAX_ENTRIES = 2_000_000
"""Past it, multi-index hashing (see the module docstring for the measurements)."""
MULTIHASH_WORDS = 16
HNSW_NEIGHBOURS = 32
HNSW_K = 16


def kind_for(entries: int) -> str:
    return FLAT if entries <= FLAT_MAX_ENTRIES else MULTIHASH


def build(codes: np.ndarray, kind: str | None = None):
    """A faiss index over (n, 32) uint8 codes; row i of `codes` is faiss id i."""
    import faiss

    kind = kind or kind_for(len(codes))
    if kind == FLAT:
        index = faiss.IndexBinaryFlat(HASH_BITS)
    elif kind == MULTIHASH:
        index = faiss.IndexBinaryMultiHash(HASH_BITS, MULTIHASH_WORDS, HASH_BITS // MULTIHASH_WORDS)
        index.nflip = MATCH_DISTANCE // MULTIHASH_WORDS
    elif kind == HNSW:
        index = faiss.IndexBinaryHNSW(HASH_BITS, HNSW_NEIGHBOURS)
        index.hnsw.efSearch = 64
    else:
        raise ValueError(f"index kind is one of {', '.join(KINDS)}, not {kind!r}")
    if len(codes):
        index.add(_codes(codes))
    return index


def within(index, queries: np.ndarray, max_distance: int = MATCH_DISTANCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query row, index row, distance) with distance <= max_distance, as three int arrays."""
    queries = _codes(queries)
    if index.ntotal == 0 or len(queries) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    if hasattr(index, "hnsw"):  # no range search: the k nearest, then the threshold
        distances, rows = index.search(queries, min(HNSW_K, index.ntotal))
        keep = (rows >= 0) & (distances <= max_distance)
        query_rows = np.broadcast_to(np.arange(len(queries))[:, None], rows.shape)
        return query_rows[keep].astype(np.int64), rows[keep].astype(np.int64), distances[keep].astype(np.int64)
    limits, distances, rows = index.range_search(queries, max_distance + 1)  # faiss keeps distance < radius
    query_rows = np.repeat(np.arange(len(queries)), np.diff(limits.astype(np.int64)))
    return query_rows.astype(np.int64), rows.astype(np.int64), distances.astype(np.int64)


def _codes(codes: np.ndarray) -> np.ndarray:
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2 or codes.shape[1] != HASH_BYTES:
        raise ValueError(f"codes are (n, {HASH_BYTES}) uint8, not {codes.shape}")
    return codes
