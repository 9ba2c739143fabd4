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
    words       `WordIndex`, ours: multi-index hashing with 12 words of 21 bits, every probe with up
                to max_distance // 12 bits flipped (2 at 31: exact by the same pigeonhole), each
                word's table a direct array of offsets (a probe is two reads), and the candidates
                checked in one popcount pass. Longer words than faiss's 16 bits mean ~3x fewer
                candidates at 1M entries, which is where the time goes. Chosen past FLAT_MAX_ENTRIES.

FLAT_MAX_ENTRIES is measured (`python -m bench.hashes --indexes`, 2 shared cores, faiss 1.15.1 on one
thread, random hashes, 8 variants an image): at 100k the flat index takes 0.76 ms an image and ours
0.83; at 1M flat 10.3 ms, faiss's multi-index hashing 13.3 (its nflip=1 probing costs 36x nflip=0),
ours 2.6 (172 MB, built in 2 s); at 10M flat 104 ms, ours 16.7 (859 MB, 27 s). HNSW: 0.82 ms at 100k
but 96% recall and 9 s to build.

The indexes are immutable once built: matching builds a new one and swaps it in
(server.core.matching), and faiss allows concurrent searches on one index.
"""

from __future__ import annotations

import numpy as np

from server.core.pdq import HASH_BITS, HASH_BYTES, MATCH_DISTANCE

FLAT, MULTIHASH, HNSW, WORDS = "flat", "multihash", "hnsw", "words"
KINDS = (FLAT, MULTIHASH, HNSW, WORDS)
FLAT_MAX_ENTRIES = 100_000
"""Past it, our multi-index hashing (bench/hashes.py measures both)."""
MULTIHASH_WORDS = 16
HNSW_NEIGHBOURS = 32
HNSW_K = 16


def kind_for(entries: int) -> str:
    return FLAT if entries <= FLAT_MAX_ENTRIES else WORDS


def build(codes: np.ndarray, kind: str | None = None):
    """A faiss index over (n, 32) uint8 codes; row i of `codes` is faiss id i."""
    import faiss

    kind = kind or kind_for(len(codes))
    if kind == FLAT:
        index = faiss.IndexBinaryFlat(HASH_BITS)
    elif kind == MULTIHASH:
        index = faiss.IndexBinaryMultiHash(HASH_BITS, MULTIHASH_WORDS, HASH_BITS // MULTIHASH_WORDS)
        index.nflip = MATCH_DISTANCE // MULTIHASH_WORDS
    elif kind == WORDS:
        return WordIndex(_codes(codes))
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
    if isinstance(index, WordIndex):
        return index.within(queries, max_distance)
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


WORD_BITS = 21
WORDS_PER_HASH = 12
"""12 words of 21 bits (the hash's last 4 bits are only checked, never indexed): two hashes within 31
bits differ in some word by at most 2 bits (pigeonhole: 12 words x 3 bits > 31)."""


def _flip_masks(flips: int) -> np.ndarray:
    """Every WORD_BITS-bit mask with at most `flips` bits set (0 first)."""
    masks = [0]
    for count in range(1, flips + 1):
        from itertools import combinations

        masks += [sum(1 << b for b in bits) for bits in combinations(range(WORD_BITS), count)]
    return np.array(masks, dtype=np.int64)


def _words(codes: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 -> (n, 12) int64: bits 21w..21w+20 of each hash, most significant first."""
    out = np.zeros((len(codes), WORDS_PER_HASH), dtype=np.int64)
    weights = (1 << np.arange(WORD_BITS - 1, -1, -1)).astype(np.int64)
    for start in range(0, len(codes), 65_536):
        bits = np.unpackbits(codes[start:start + 65_536], axis=1)[:, : WORD_BITS * WORDS_PER_HASH]
        out[start:start + 65_536] = bits.reshape(-1, WORDS_PER_HASH, WORD_BITS).astype(np.int64) @ weights
    return out


class WordIndex:
    """Multi-index hashing with a direct table per word (see the module docstring); immutable once
    built. Table w: `order[w]` lists the rows by their word w, `starts[w][k]` is where the rows whose
    word w is k begin (2^21 + 1 offsets), so a probe is two array reads, not a search."""

    def __init__(self, codes: np.ndarray) -> None:
        self.codes = codes
        self.ntotal = len(codes)
        words = _words(codes)
        self.order, self.starts = [], []
        for w in range(WORDS_PER_HASH):
            self.order.append(np.argsort(words[:, w], kind="stable").astype(np.int32))
            counts = np.bincount(words[:, w], minlength=1 << WORD_BITS)
            self.starts.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        self._masks: dict[int, np.ndarray] = {}

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + sum(o.nbytes + s.nbytes for o, s in zip(self.order, self.starts))

    def within(self, queries: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flips = max(0, max_distance) // WORDS_PER_HASH
        masks = self._masks.get(flips)
        if masks is None:
            masks = self._masks[flips] = _flip_masks(flips)
        qwords = _words(queries)
        found_q, found_row = [], []
        for w in range(WORDS_PER_HASH):
            probes = (qwords[:, w, None] ^ masks[None, :]).ravel()
            lo, hi = self.starts[w][probes], self.starts[w][probes + 1]
            lengths = (hi - lo).astype(np.int64)
            total = int(lengths.sum())
            if not total:
                continue
            at = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
            found_row.append(self.order[w][at])
            found_q.append(np.repeat(np.repeat(np.arange(len(queries)), len(masks)), lengths))
        if not found_row:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        query_rows, rows = np.concatenate(found_q), np.concatenate(found_row).astype(np.int64)
        diff = queries.view(np.uint64)[query_rows] ^ self.codes.view(np.uint64)[rows]
        distances = np.bitwise_count(diff).sum(axis=1, dtype=np.int64)
        keep = distances <= max_distance
        # A near hash is found by several words: each (query, row) once (the few kept, deduplicated).
        pairs, first = np.unique(query_rows[keep].astype(np.int64) * self.ntotal + rows[keep], return_index=True)
        return pairs // self.ntotal, pairs % self.ntotal, distances[keep][first]
