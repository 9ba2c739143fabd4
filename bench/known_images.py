"""Issue 22's "Measure it" tables for known-image matching's two signals, PDQ and the served model's
embedding (`python -m bench.hashes --quick`):

    robustness     the share of re-posts (bench/reposts.py) still matched, per signal and combined, and
                   the copies that would match another banked photo (here);
    per image      what hashing and embedding cost on one core (here);
    false matches  among the real photos and against a bank of 1M entries, per signal, at several
                   thresholds; the served IVF index's recall on the re-posts (bench/false_matches.py);
    cost           the real server's throughput with the bank loaded against none (--cost,
                   bench/bank_cost.py).

Photos come from ../shared/data; every table sees the same banked and unrelated photos, decoded once,
with their embeddings kept in a temporary folder for the run (bench.embeddings.Embedder).
"""

from __future__ import annotations

import statistics

import numpy as np

from bench.bank_cost import bench_cost
from bench.embeddings import Embedder, GaussianModel, stored
from bench.false_matches import (bench_false_matches_embedding, bench_false_matches_pdq, bench_served_index,
                                 real_pair_distances, real_pair_similarities)
from bench.photos import PhotoSet, hamming, load_photos, photo_files
from bench.reposts import REPOSTS
from server.core import pdq


def bench_robustness(banked: PhotoSet, embedder: Embedder) -> tuple[list[dict], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Each re-post of each banked photo, matched as the server matches it; the rows, and each
    re-post's copies' embeddings with which matched their own photo (for the served index's recall,
    bench/false_matches.py)."""
    codes, bank_vectors = banked.codes, stored(banked.vectors)
    threshold, n = embedder.threshold, len(banked.photos)
    print(f"\nRobustness: {n} banked photos of ../shared/data ({banked.asked} drawn, {banked.skipped} skipped at PDQ quality "
          f"< {pdq.MIN_QUALITY}, for both signals). A copy counts for PDQ when one of its query variants "
          f"(pdq.query_variants: 8 dihedral, 16 in a uniform border) is within {pdq.MATCH_DISTANCE} bits of its own "
          f"photo's hash at quality >= {pdq.MIN_QUALITY} ('low q' copies fall below it: missed by PDQ); for the embedding "
          f"({embedder.name}) when its cosine with its own photo's is >= {threshold:.4f} (exact, no index); 'either' is the "
          f"combined signal, the one the target is for. 'wrong P' / 'wrong E': copies that would match another banked photo "
          f"by PDQ / by the embedding. 'bits' and 'cos': median to its own photo; 'cos 5%': the 5th percentile.\n")
    print(f"{'re-post':<20} {'PDQ':>5} {'emb':>5} {'either':>7} {'target':>7} {'met':>4} {'bits':>5} {'cos':>6} "
          f"{'cos 5%':>7} {'wrong P':>8} {'wrong E':>8} {'low q':>6}")
    rows, copies = [], {}
    for name, change, target in REPOSTS:
        hit_p = hit_e = hit_any = wrong_p = wrong_e = low = 0
        bits, cosines, vectors, emb_hits = [], [], [], []
        for i, photo in enumerate(banked.photos):
            copy = change(photo.pixels)
            variants = pdq.query_variants(copy)
            best = hamming(variants.as_array(), codes).min(axis=0)
            vector = embedder.vector(copy)
            sims = bank_vectors @ vector
            vectors.append(vector)
            bits.append(int(best[i]))
            cosines.append(float(sims[i]))
            by_pdq = variants.usable and best[i] <= pdq.MATCH_DISTANCE
            by_emb = sims[i] >= threshold
            emb_hits.append(by_emb)
            low += not variants.usable
            hit_p += by_pdq
            hit_e += by_emb
            hit_any += by_pdq or by_emb
            wrong_p += variants.usable and bool((np.delete(best, i) <= pdq.MATCH_DISTANCE).any())
            wrong_e += bool((np.delete(sims, i) >= threshold).any())
        row = dict(change=name, pdq=hit_p / n, embedding=hit_e / n, either=hit_any / n, target=target,
                   met=hit_any / n >= target, median_bits=statistics.median(bits), median_cos=statistics.median(cosines),
                   cos_p5=float(np.percentile(cosines, 5)), wrong_pdq=wrong_p, wrong_embedding=wrong_e, low_quality=low)
        rows.append(row)
        copies[name] = (np.stack(vectors), np.array(emb_hits, dtype=bool))
        print(f"{name:<20} {row['pdq']:>5.0%} {row['embedding']:>5.0%} {row['either']:>7.0%} {target:>7.0%} "
              f"{'yes' if row['met'] else 'no':>4} {row['median_bits']:>5.0f} {row['median_cos']:>6.3f} {row['cos_p5']:>7.3f} "
              f"{wrong_p:>8} {wrong_e:>8} {low:>6}", flush=True)
    return rows, copies


def print_costs(photos: PhotoSet) -> None:
    count = len(next(iter(photos.times_ms.values())))
    sides = [p.side for p in photos.photos]
    print(f"\nPer image on one core: {count} photos of ../shared/data as decoded (longest side median {statistics.median(sides):.0f} "
          f"px); the embedding is the v3 head's crop, backbone and pooling (ImageHead.run, the server's path) and the "
          f"projection. A shared core: other work ran beside it.\n")
    print(f"{'step':<44} {'median ms':>10} {'mean ms':>8} {'p95 ms':>8}")
    for name, times in photos.times_ms.items():
        print(f"{name:<44} {statistics.median(times):>10.2f} {statistics.mean(times):>8.2f} "
              f"{sorted(times)[int(len(times) * 0.95)]:>8.2f}")


def bench_issue22(args, embedder: Embedder) -> GaussianModel:
    """Every table of issue 22's "Measure it"; the Gaussian model of embeddings it fitted."""
    files = photo_files(args.robust + args.unrelated)
    banked = load_photos(files[:args.robust], embedder, keep_pixels=True)
    unrelated = load_photos(files[args.robust:], embedder, keep_pixels=False)
    everything = PhotoSet(banked.photos + unrelated.photos, banked.asked + unrelated.asked,
                          banked.skipped + unrelated.skipped,
                          {k: banked.times_ms[k] + unrelated.times_ms[k] for k in banked.times_ms})
    print_costs(everything)
    _, copies = bench_robustness(banked, embedder)
    for p in banked.photos:
        p.pixels = None
    print(f"\nUnrelated photos: {len(unrelated.photos)} of {unrelated.asked} ({unrelated.skipped} skipped at PDQ quality "
          f"< {pdq.MIN_QUALITY})")
    real_pair_distances(everything.photos)
    real_pair_similarities(everything.photos, embedder.threshold)
    model = GaussianModel(everything.vectors)
    rng = np.random.default_rng(22)
    bench_false_matches_pdq(banked, unrelated, args.bank_size, rng)
    synthetic = bench_false_matches_embedding(banked, unrelated, args.bank_size, model, embedder.threshold, rng)
    bench_served_index(banked, copies, synthetic, embedder.threshold)
    del synthetic
    if args.cost:
        bench_cost([p.path for p in unrelated.photos[:64]], banked.codes, stored(banked.vectors), embedder.name,
                   args.bank_size, model, args.clients, args.cost_seconds, rng, args.cost_backend)
    else:
        print("\nCost (throughput with a bank loaded against none): not run (--cost)")
    return model
