"""`python -m bench.hashes`: what known-image matching costs (issue 22), as tables, for both signals:
PDQ hashes and the served model's (v3) embedding.

1. hashing   PDQ of ~100 real photos from ../shared/data (decoded first, as the server has them):
             ms per image for one hash, the 8 dihedral variants and the served query variants; and how
             many still match after a rotation, a mirror, a JPEG re-encode and a resize;
2. issue 22's tables (bench/known_images.py; the re-posts in bench/reposts.py), on ~1300 photos:
   per image    ms per image for PDQ and for the embedding (the v3 head's backbone on ONNX Runtime, one
                thread: the server's own path), on one core;
   robustness   issue 22's re-posts of ~300 photos (JPEG q50/q30, resize 50%/25%, crops of 5/10/20%
                centred and off each side, rotate 90, mirror, a price banner and a watermark box over
                12%, a 10% white border, a screenshot frame, brightness +20%, contrast -20%): the share
                still matched by PDQ, by the embedding and by either, beside the issue's targets, and
                the copies that would match another banked photo;
   false matches  ~1000 other photos (disjoint from the banked ones) against each other (the honest
                measure) and against a bank of 1M entries, PDQ at 16/24/31/40 bits (random hashes) and
                the embedding at the v3 threshold and around it (synthetic vectors: a Gaussian fitted
                on the real ones), per comparison and per query; and the re-posts through the vector
                index the matcher builds at 1M (IVF-SQ8), against the exact cosine;
   cost         (--cost) the real server's throughput at c=16 with no bank, with the 1M-entry bank (a
                SQLite review database whose entries carry both signals) and with none again, one after
                the other, one backend for all;
3. indexes   per signal, random hashes and synthetic vectors at 100k and 1M (10M with --ten-million,
             when memory allows): build time, memory (the index's own size, and the RSS growth: a lower
             bound where freed memory is reused), time per looked-up image (8 PDQ variants within 31
             bits; one vector at the threshold less the matcher's margin) and the share of planted near
             copies found: PDQ flat, multi-index hashing (faiss's and our words), HNSW (100k only: slow
             to build); embedding flat (100k) and IVF-SQ8; and the matcher's whole load (columns,
             snapshot, both indexes) from a source of that many entries.

    nice -n 10 python -m bench.hashes [--photos 100] [--queries 200] [--threads 1] [--sizes 100000,1000000] [--ten-million]
    taskset -c 0 nice python -m bench.hashes --quick --cost    # 2 only (about 8 minutes on one shared core)
    taskset -c 0 nice python -m bench.hashes --indexes --sizes 100000,1000000 --ten-million    # 3 only
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import psutil

from bench.embeddings import NEAR_MARGIN, Embedder, GaussianModel, bench_vector_index, index_mb, near_copies
from bench.known_images import bench_issue22
from bench.photos import SHARED, load_photos, photo_files
from server.core import hash_index, pdq, vector_index
from server.core.bank_rows import BankEntry
from server.core.embedding import SIGNAL_EMBEDDING
from server.core.matching import BankMatcher


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def photos(count: int) -> list[np.ndarray]:
    files = sorted(p for p in SHARED.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    step = max(1, len(files) // count)
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files[::step][:count]]
    return [im for im in images if im is not None]


def bench_hashing(images: list[np.ndarray]) -> None:
    one, eight, served = [], [], []
    for im in images:
        for step, times in ((pdq.hash_image, one), (pdq.dihedral, eight), (pdq.query_variants, served)):
            t = time.perf_counter()
            step(im)
            times.append((time.perf_counter() - t) * 1000)
    sides = [max(im.shape[:2]) for im in images]
    print(f"\nPDQ on {len(images)} photos of ../shared/data (longest side median {statistics.median(sides):.0f} px, "
          f"max {max(sides)})\n")
    print(f"{'':<22} {'median ms':>10} {'mean ms':>8} {'p95 ms':>8}  (the embedding's cost: the per-image table)")
    for name, times in (("hash", one), ("8 dihedral variants", eight), ("query variants", served)):
        print(f"{name:<22} {statistics.median(times):>10.2f} {statistics.mean(times):>8.2f} "
              f"{sorted(times)[int(len(times) * 0.95)]:>8.2f}")

    changes = {
        "jpeg q30": lambda im: cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], cv2.IMREAD_COLOR),
        "resize 50%": lambda im: cv2.resize(im, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
        "rotate 90": lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE),
        "rotate 180": lambda im: cv2.rotate(im, cv2.ROTATE_180),
        "mirror": lambda im: np.ascontiguousarray(im[:, ::-1]),
        "upside down": lambda im: np.ascontiguousarray(im[::-1]),
    }
    banked = [pdq.hash_image(im) for im in images]
    usable = [(im, b) for im, b in zip(images, banked) if b.usable]
    print(f"\nStill matched (<= {pdq.MATCH_DISTANCE} bits) among the {len(usable)} photos of quality >= {pdq.MIN_QUALITY}\n")
    print(f"{'change':<14} {'as is':>7} {'any variant':>12}")
    for name, change in changes.items():
        plain = variants = 0
        for im, b in usable:
            copy = change(im)
            plain += pdq.distance(pdq.hash_image(copy).code, b.code) <= pdq.MATCH_DISTANCE
            variants += min(pdq.distance(c, b.code) for c in pdq.dihedral(copy).codes) <= pdq.MATCH_DISTANCE
        print(f"{name:<14} {plain / len(usable):>6.0%} {variants / len(usable):>12.0%}")


def queries_near(codes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` images' worth of 8 variants: the first near a banked code (10 bits off), the rest random."""
    block = rng.integers(0, 256, (count, 8, pdq.HASH_BYTES), dtype=np.uint8)
    for q in range(count):
        bits = np.unpackbits(codes[rng.integers(len(codes))])
        bits[rng.choice(pdq.HASH_BITS, 10, replace=False)] ^= 1
        block[q, 0] = np.packbits(bits)
    return block


def bench_index(size: int, kinds: list[str], queries: int, rng: np.random.Generator) -> list[dict]:
    codes = rng.integers(0, 256, (size, pdq.HASH_BYTES), dtype=np.uint8)
    block = queries_near(codes, queries, rng)
    rows = []
    for kind in kinds:
        before = rss_mb()
        t = time.perf_counter()
        index = hash_index.build(codes, kind)
        build_s = time.perf_counter() - t
        memory = rss_mb() - before
        times, found = [], 0
        for q in block:
            t = time.perf_counter()
            hits = hash_index.within(index, q)
            times.append((time.perf_counter() - t) * 1000)
            found += len(hits[0]) > 0
        size_mb = index.nbytes / 2**20 if isinstance(index, hash_index.WordIndex) else index_mb(index)
        rows.append(dict(size=size, kind=kind, build_s=build_s, memory_mb=memory, index_mb=size_mb, p50_ms=statistics.median(times),
                         p99_ms=sorted(times)[int(len(times) * 0.99)], recall=found / queries))
        del index
    return rows


class RandomSource:
    """A bank of `size` random entries, each with a synthetic embedding of `model_name`, handed over
    in pages as the database would."""

    def __init__(self, size: int, model: GaussianModel, model_name: str, rng: np.random.Generator) -> None:
        self.codes = rng.integers(0, 256, (size, pdq.HASH_BYTES), dtype=np.uint8)
        self.vectors = np.concatenate([c.astype("<f2") for c in model.chunks(size, rng)])
        self.model_name = model_name
        self.added = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def entries_since(self, after_seq: int, limit: int) -> list[BankEntry]:
        end = min(after_seq + limit, len(self.codes))
        return [BankEntry(i + 1, i + 1, "partner", self.codes[i].tobytes(), "known_trafficking_image", f"C-{i}", self.added,
                          embedding=self.vectors[i].tobytes(), embedding_model=self.model_name)
                for i in range(after_seq, end)]

    def bank_actions(self) -> dict[str, str]:
        return {"partner": "REVIEW"}


def bench_matcher(size: int, queries: int, rng: np.random.Generator, model: GaussianModel, embedder_spec) -> dict:
    """The matcher's whole load (both signals) and its match per image: 8 PDQ variants, one near a
    random entry's hash, and a vector, a near copy of another entry's; 'found' counts the latter found
    by the embedding."""
    name, dim, threshold = embedder_spec
    source = RandomSource(size, model, name, rng)
    block = queries_near(source.codes, queries, rng)
    targets = rng.integers(0, size, queries)
    vectors = near_copies(source.vectors[targets].astype(np.float32), threshold, rng)
    before = rss_mb()
    matcher = BankMatcher(source)
    matcher.use_embedding(name, dim, threshold)
    t = time.perf_counter()
    matcher.refresh()
    load_s = time.perf_counter() - t
    memory = rss_mb() - before
    times, found = [], 0
    for q, vector, target in zip(block, vectors, targets.tolist()):
        t = time.perf_counter()
        matches = matcher.match(q, 100, vector, name)
        times.append((time.perf_counter() - t) * 1000)
        found += any(m.entry_id == target + 1 and SIGNAL_EMBEDDING in m.signal for m in matches)
    return dict(size=size, kind=f"matcher ({hash_index.kind_for(size)}+{vector_index.kind_for(size)})", build_s=load_s,
                memory_mb=memory, index_mb=snapshot_mb(matcher), p50_ms=statistics.median(times),
                p99_ms=sorted(times)[int(len(times) * 0.99)], recall=found / queries)


def snapshot_mb(matcher: BankMatcher) -> float:
    """The live snapshot's columns and indexes (both segments), in MB."""
    total = 0.0
    for segment in (matcher.snapshot.base, matcher.snapshot.delta):
        index = segment.index
        total += segment.rows.nbytes / 2**20 + segment.vector_rows.nbytes / 2**20 + index_mb(segment.vectors)
        total += index.nbytes / 2**20 if isinstance(index, hash_index.WordIndex) else index_mb(index)
    return total


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'entries':>10} {'index':<24} {'build s':>8} {'index MB':>9} {'RSS +MB':>8} {'p50 ms/image':>13} "
          f"{'p99 ms':>8} {'found':>6}")
    for r in rows:
        print(f"{r['size']:>10,} {r['kind']:<24} {r['build_s']:>8.2f} {r['index_mb']:>9.0f} {r['memory_mb']:>8.0f} "
              f"{r['p50_ms']:>13.3f} "
              f"{r['p99_ms']:>8.3f} {r['recall']:>6.0%}")


def bench_indexes(args, model: GaussianModel, spec: tuple[str, int, float]) -> None:
    """Table 3: both signals' indexes at each size, and the matcher's whole load below 10M."""
    rng = np.random.default_rng(0)
    rows = []
    sizes = [int(s) for s in args.sizes.split(",")] + ([10_000_000] if args.ten_million else [])
    fitted = f"a Gaussian fitted on {model.fitted_on} real ones" if model.fitted_on else "isotropic: no ../shared"
    print(f"\nIndexes: random PDQ hashes and synthetic embeddings ({fitted}, a model), "
          f"{args.queries} looked-up images each; 'found': planted near copies found (PDQ 10 bits off; "
          f"embedding at a cosine drawn in [{spec[2] + NEAR_MARGIN:.3f}, 0.99])")
    for size in sizes:
        start = len(rows)
        if size >= 10_000_000:
            free_gb = psutil.virtual_memory().available / 2**30
            kinds = [hash_index.FLAT] + ([hash_index.WORDS] if free_gb > 6 else [])
            if hash_index.WORDS not in kinds:
                print(f"  10M words index left out: {free_gb:.1f} GB available, it needs ~3 GB while built")
            rows += bench_index(size, kinds, args.queries, rng)
            rows += bench_vector_index(size, [vector_index.IVF], args.queries, spec[2], model, rng)
        else:
            kinds = [hash_index.FLAT, hash_index.MULTIHASH, hash_index.WORDS] + \
                ([hash_index.HNSW] if size <= args.hnsw_max else [])
            rows += bench_index(size, kinds, args.queries, rng)
            vector_kinds = [vector_index.FLAT, vector_index.IVF] if size <= 100_000 else [vector_index.IVF]
            rows += bench_vector_index(size, vector_kinds, args.queries, spec[2], model, rng)
            rows.append(bench_matcher(size, args.queries, rng, model, spec))
        print_rows(rows[start:])
    print("\nAll sizes")
    print_rows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200, help="images looked up per index")
    parser.add_argument("--threads", type=int, default=1, help="faiss's OpenMP threads (a server matches on many threads)")
    parser.add_argument("--sizes", default="100000,1000000", help="bank sizes of the index tables, comma-separated")
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW (slow to build) past this size")
    parser.add_argument("--ten-million", action="store_true",
                        help="add 10M: PDQ flat and words (memory allowing), embedding IVF-SQ8")
    parser.add_argument("--robust", type=int, default=300, help="banked photos re-posted for the robustness table")
    parser.add_argument("--unrelated", type=int, default=1000, help="other photos for the false-match table")
    parser.add_argument("--bank-size", type=int, default=1_000_000, help="entries of the false-match and cost bank")
    parser.add_argument("--cost", action="store_true", help="also the real server's throughput with and without the bank")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients of the cost table")
    parser.add_argument("--cost-seconds", type=float, default=30.0, help="load time per server in the cost table")
    parser.add_argument("--cost-backend", default="onnx", help="--backend of the cost table's servers (all the same)")
    parser.add_argument("--quick", action="store_true", help="only issue 22's tables (2): no hashing or index tables")
    parser.add_argument("--indexes", action="store_true",
                        help="only the index tables (3), the Gaussian fitted on the --robust + --unrelated photos' embeddings")
    args = parser.parse_args()
    import tempfile

    import faiss

    faiss.omp_set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, faiss {faiss.__version__} "
          f"on {args.threads} thread(s)")
    with tempfile.TemporaryDirectory(prefix="wildscreen-bench-embeddings-") as tmp:
        embedder = Embedder(Path(tmp))
        spec = (embedder.name, embedder.spec.dim, embedder.threshold)
        print(f"embedding {embedder.name} of model v3 ({embedder.runtime}), threshold {embedder.threshold:.4f}")
        if not SHARED.is_dir():
            print(f"\n{SHARED} is absent: no hashing, robustness or false-match table")
            model = GaussianModel.isotropic(embedder.spec.dim)
        elif args.indexes:
            model = GaussianModel(load_photos(photo_files(args.robust + args.unrelated), embedder, keep_pixels=False).vectors)
        else:
            if not args.quick:
                bench_hashing(photos(args.photos))
            model = bench_issue22(args, embedder)
        if not args.quick:
            bench_indexes(args, model, spec)


if __name__ == "__main__":
    main()
