"""Issue 22's false-match tables, per signal: unrelated real photos against each other (the honest
measure), and against a bank of a million entries (the banked photos' own plus random PDQ hashes and
synthetic embeddings: models of unrelated photos); and the recall of the vector index the matcher
serves a bank that size with, on the robustness table's re-posts.
"""

from __future__ import annotations

import time

import numpy as np

from bench.embeddings import GaussianModel, stored
from bench.photos import SHARED, Photo, PhotoSet, hamming
from server.core import hash_index, pdq, vector_index
from server.core.matching import CANDIDATE_MARGIN

PDQ_THRESHOLDS = (16, 24, 31, 40)


def embedding_thresholds(threshold: float) -> tuple[float, ...]:
    """The served threshold and a few around it."""
    return (threshold - 0.05, threshold - 0.02, threshold, threshold + 0.01)


def _names(photos: list[Photo]) -> list:
    return [p.path.relative_to(SHARED) for p in photos]


def real_pair_distances(photos: list[Photo]) -> np.ndarray:
    """Every pair of distinct real photos: the least distance between one's query variants and the
    other's hash (as matching measures it), both ways, the smaller; prints the distribution."""
    originals = np.stack([p.hashes.as_array()[0] for p in photos])
    n = len(photos)
    least = np.stack([hamming(p.variants.as_array(), originals).min(axis=0) for p in photos])
    least = np.minimum(least, least.T)
    upper = least[np.triu_indices(n, 1)]
    pairs = len(upper)
    print(f"\nReal unrelated pairs, PDQ: {n} photos of ../shared/data (quality >= {pdq.MIN_QUALITY}, no byte-identical "
          f"files), {pairs:,} pairs, least distance over one's query variants to the other's hash")
    q = np.percentile(upper, [0.01, 0.1, 1, 5, 50])
    print(f"  min {upper.min()}, 0.01% {q[0]:.0f}, 0.1% {q[1]:.0f}, 1% {q[2]:.0f}, 5% {q[3]:.0f}, median {q[4]:.0f} bits")
    print(f"{'threshold':>10} {'pairs within':>13} {'per pair':>10}")
    for t in PDQ_THRESHOLDS:
        k = int((upper <= t).sum())
        print(f"{t:>10} {k:>13,} {k / pairs:>10.2e}")
    close = np.argwhere(np.triu(least <= max(PDQ_THRESHOLDS), 1))
    names = _names(photos)
    if len(close):
        order = np.argsort([least[i, j] for i, j in close])[:12]
        print("  the closest pairs (a look at them tells a duplicate or near-copy in the data set from a true false match):")
        for i, j in close[order]:
            print(f"    {least[i, j]:>3} bits  {names[i]}  ~  {names[j]}")
    beyond = upper[upper > max(PDQ_THRESHOLDS)]
    print(f"  every other pair differs in more than {max(PDQ_THRESHOLDS)} bits (the nearest in {beyond.min()})")
    return upper


def real_pair_similarities(photos: list[Photo], threshold: float) -> np.ndarray:
    """Every pair of distinct real photos: the cosine of their embeddings (one as banked, float16;
    the larger of the two ways); prints the distribution and the closest pairs."""
    vectors = np.stack([p.vector for p in photos])
    sims = vectors @ stored(vectors).T
    sims = np.maximum(sims, sims.T)
    n = len(photos)
    upper = sims[np.triu_indices(n, 1)]
    pairs = len(upper)
    q = np.percentile(upper, [50, 99, 99.9, 99.99])
    print(f"\nReal unrelated pairs, embedding: the same {n} photos, {pairs:,} pairs, cosine similarity (served threshold "
          f"{threshold:.4f})")
    print(f"  median {q[0]:.3f}, 99% {q[1]:.3f}, 99.9% {q[2]:.3f}, 99.99% {q[3]:.3f}, max {upper.max():.4f}")
    print(f"{'threshold':>10} {'pairs at or above':>18} {'per pair':>10}")
    for t in embedding_thresholds(threshold):
        k = int((upper >= t).sum())
        print(f"{t:>10.4f} {k:>18,} {k / pairs:>10.2e}")
    names = _names(photos)
    i, j = np.triu_indices(n, 1)
    order = np.argsort(-upper)[:12]
    print("  the closest pairs (a look at them tells a duplicate or near-copy in the data set from a true false match):")
    for k in order:
        print(f"    {upper[k]:.4f}  {names[i[k]]}  ~  {names[j[k]]}")
    return upper


def bench_false_matches_pdq(banked: PhotoSet, queries: PhotoSet, bank_size: int, rng: np.random.Generator) -> list[dict]:
    """The unrelated photos' query variants against the banked photos' hashes plus random ones to `bank_size`."""
    real = banked.codes
    codes = np.concatenate([real, rng.integers(0, 256, (bank_size - len(real), pdq.HASH_BYTES), dtype=np.uint8)])
    t = time.perf_counter()
    index = hash_index.build(codes, hash_index.FLAT)
    blocks = [q.variants.as_array() for q in queries.photos]
    owner = np.repeat(np.arange(len(blocks)), [len(b) for b in blocks])
    query_rows, rows, dists = hash_index.within(index, np.concatenate(blocks), max(PDQ_THRESHOLDS))
    search_s = time.perf_counter() - t
    pairs: dict[tuple[int, int], int] = {}
    for q, r, d in zip(owner[query_rows].tolist(), rows.tolist(), dists.tolist()):
        pairs[(q, r)] = min(d, pairs.get((q, r), 256))
    n = len(blocks)
    comparisons = n * bank_size
    print(f"\nFalse matches, PDQ: {n} unrelated photos of ../shared/data (disjoint from the banked ones), their query "
          f"variants ({len(owner):,} codes) against a bank of {bank_size:,} entries ({len(real)} real hashes of the banked "
          f"photos + {bank_size - len(real):,} random ones), flat index, {search_s:.1f} s; a comparison is one photo (any "
          f"variant) against one entry: {comparisons:,} comparisons. Random hashes are an optimistic model of unrelated "
          f"photos (two random hashes differ in 128 +- 8 bits): the real pairs above are the honest measure.")
    print(f"{'threshold':>10} {'pairs (real)':>13} {'pairs (random)':>15} {'per comparison':>15} {'photos matched':>15} {'per query':>10}")
    out = []
    for t in PDQ_THRESHOLDS:
        hit = [(q, r) for (q, r), d in pairs.items() if d <= t]
        real_hits = sum(r < len(real) for _, r in hit)
        photos_hit = len({q for q, _ in hit})
        row = dict(threshold=t, real=real_hits, random=len(hit) - real_hits, per_comparison=len(hit) / comparisons,
                   photos=photos_hit, per_query=photos_hit / n)
        out.append(row)
        print(f"{t:>10} {real_hits:>13} {row['random']:>15} {row['per_comparison']:>15.2e} {photos_hit:>15} {row['per_query']:>10.2%}")
    return out


def bench_false_matches_embedding(banked: PhotoSet, queries: PhotoSet, bank_size: int, model: GaussianModel,
                                  threshold: float, rng: np.random.Generator) -> np.ndarray:
    """The unrelated photos' embeddings against the banked photos' plus synthetic ones to `bank_size`,
    exactly (every pair's cosine, in chunks); returns the synthetic vectors (float16, as banked)."""
    real = stored(banked.vectors)
    qv = queries.vectors
    thresholds = embedding_thresholds(threshold)
    t = time.perf_counter()
    synthetic = np.concatenate([c.astype(np.float16) for c in model.chunks(bank_size - len(real), rng)])
    hits_q, hits_r, hits_s = [], [], []
    chunks = ((len(real) + s, synthetic[s:s + 16_384].astype(np.float32)) for s in range(0, len(synthetic), 16_384))
    for offset, chunk in [(0, real), *chunks]:
        sims = qv @ chunk.T
        q, r = np.nonzero(sims >= min(thresholds))
        hits_q.append(q)
        hits_r.append(r + offset)
        hits_s.append(sims[q, r])
    search_s = time.perf_counter() - t
    q, r, s = (np.concatenate(a) for a in (hits_q, hits_r, hits_s))
    n = len(qv)
    comparisons = n * bank_size
    print(f"\nFalse matches, embedding: the same {n} unrelated photos' embeddings against a bank of {bank_size:,} "
          f"({len(real)} real embeddings of the banked photos + {len(synthetic):,} SYNTHETIC ones, a model: a Gaussian with "
          f"the mean and covariance of the {model.fitted_on} real embeddings above (banked and unrelated), then unit length, float16 as banked), every "
          f"pair's cosine, {search_s:.1f} s; {comparisons:,} comparisons. Real photos cluster (same objects, same studio "
          f"backdrops) more than a Gaussian does: the real pairs above are the honest measure.")
    print(f"{'threshold':>10} {'pairs (real)':>13} {'pairs (synthetic)':>18} {'per comparison':>15} {'photos matched':>15} "
          f"{'per query':>10}")
    for t in thresholds:
        keep = s >= t
        real_hits = int((r[keep] < len(real)).sum())
        photos_hit = len(np.unique(q[keep]))
        print(f"{t:>10.4f} {real_hits:>13} {int(keep.sum()) - real_hits:>18} {keep.sum() / comparisons:>15.2e} "
              f"{photos_hit:>15} {photos_hit / n:>10.2%}")
    return synthetic


def bench_served_index(banked: PhotoSet, copies: dict[str, tuple[np.ndarray, np.ndarray]], synthetic: np.ndarray,
                       threshold: float) -> None:
    """The robustness table's re-posts through the index the matcher builds for a bank of the false-match
    bank's size (vector_index.build, asked at the threshold less CANDIDATE_MARGIN, the exact cosine
    deciding): how many of the copies the exact comparison matched (`copies`: each re-post's vectors
    and which of them matched their own photo) it still finds."""
    real = stored(banked.vectors)
    size = len(real) + len(synthetic)
    kind = vector_index.kind_for(size)
    t = time.perf_counter()
    index = vector_index.build(np.concatenate([real, synthetic.astype(np.float32)]))
    build_s = time.perf_counter() - t
    exact = found = 0
    lost: dict[str, int] = {}
    times = []
    for name, (vectors, matched) in copies.items():
        for i in np.flatnonzero(matched):
            vector = vectors[i]
            exact += 1
            t = time.perf_counter()
            _, rows, _ = vector_index.at_least(index, vector[None, :], threshold - CANDIDATE_MARGIN)
            times.append((time.perf_counter() - t) * 1000)
            if (rows == i).any():
                found += 1
            else:
                lost[name] = lost.get(name, 0) + 1
    cells = getattr(index, "nlist", 0)
    print(f"\nThe served vector index at {size:,} entries: {kind} ({cells} cells, nprobe {vector_index.NPROBE}, float16 codes), "
          f"built in {build_s:.1f} s by vector_index.build, asked at {threshold - CANDIDATE_MARGIN:.4f} as the matcher "
          f"asks; of the {exact:,} re-posts the exact cosine matched (robustness table), it finds {found:,} "
          f"({found / max(exact, 1):.2%}); lookup p50 {np.median(times):.2f} ms, p99 {np.percentile(times, 99):.2f} ms "
          f"per image" + ("; missed: " + ", ".join(f"{k} {v}" for k, v in lost.items()) if lost else ""))
