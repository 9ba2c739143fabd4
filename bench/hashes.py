"""`python -m bench.hashes`: what known-image matching costs (issue 22), as tables.

1. hashing   PDQ of ~100 real photos from ../shared/data (decoded first, as the server has them):
             ms per image for one hash and for the 8 dihedral variants; and how many of them still
             match after a rotation, a mirror, a JPEG re-encode and a resize (through the variants);
2. indexes   random 256-bit hashes, 100k and 1M (10M with --ten-million, when memory allows):
             build time, memory (RSS growth) and time per looked-up image (8 variants, within 31
             bits) for the flat index, multi-index hashing and HNSW (100k only: slow to build); and
             the matcher's whole load (columns, snapshot, index) from a source of that many entries.

3. robustness  issue 22's re-posts of ~300 photos (JPEG q50/q30, resize 50%/25%, crops of 5/10/20%
             centred and off each side, rotate 90, mirror, a price banner and a watermark box over 12%,
             a 10% white border, a screenshot frame, brightness +20%, contrast -20%): the share still
             matched through the 8 variants, beside the issue's targets;
4. false matches  ~1000 other photos (disjoint from the banked ones) against a bank of 1M entries (the
             banked photos' hashes plus random ones) at 16, 24, 31 and 40 bits, per comparison and per
             query; and the distances of every real pair among the ~1300 photos (random hashes are
             an optimistic model of unrelated photos);
5. cost      (--cost) the real server's throughput at c=16 with no bank, with the 1M-entry bank (a
             SQLite review database) and with none again, one after the other, one backend for all.

PDQ only: the embedding signal (crops and frames) is not built yet, and the tables say so. Tables 3-5
live in bench/known_images.py, the re-posts in bench/reposts.py.

    nice -n 10 python -m bench.hashes [--photos 100] [--queries 200] [--threads 1] [--ten-million]
    nice -n 10 python -m bench.hashes --quick --cost    # 3-5 only (about 2.5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from datetime import datetime, timezone

import cv2
import numpy as np
import psutil

from bench.known_images import SHARED, bench_issue22
from server.core import hash_index, pdq
from server.core.bank_rows import BankEntry
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
    one, eight = [], []
    for im in images:
        t = time.perf_counter()
        pdq.hash_image(im)
        one.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        pdq.dihedral(im)
        eight.append((time.perf_counter() - t) * 1000)
    sides = [max(im.shape[:2]) for im in images]
    print(f"\nPDQ on {len(images)} photos of ../shared/data (longest side median {statistics.median(sides):.0f} px, "
          f"max {max(sides)})\n")
    print(f"{'':<22} {'median ms':>10} {'mean ms':>8} {'p95 ms':>8}")
    for name, times in (("hash", one), ("8 dihedral variants", eight)):
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
        rows.append(dict(size=size, kind=kind, build_s=build_s, memory_mb=memory, p50_ms=statistics.median(times),
                         p99_ms=sorted(times)[int(len(times) * 0.99)], recall=found / queries))
        del index
    return rows


class RandomSource:
    """A bank of `size` random entries, handed over in pages as the database would."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.codes = rng.integers(0, 256, (size, pdq.HASH_BYTES), dtype=np.uint8)
        self.added = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def entries_since(self, after_seq: int, limit: int) -> list[BankEntry]:
        end = min(after_seq + limit, len(self.codes))
        return [BankEntry(i + 1, i + 1, "partner", self.codes[i].tobytes(), "known_trafficking_image", f"C-{i}", self.added)
                for i in range(after_seq, end)]

    def bank_actions(self) -> dict[str, str]:
        return {"partner": "REVIEW"}


def bench_matcher(size: int, queries: int, rng: np.random.Generator) -> dict:
    source = RandomSource(size, rng)
    block = queries_near(source.codes, queries, rng)
    before = rss_mb()
    matcher = BankMatcher(source)
    t = time.perf_counter()
    matcher.refresh()
    load_s = time.perf_counter() - t
    memory = rss_mb() - before
    times = []
    for q in block:
        t = time.perf_counter()
        matcher.match(q)
        times.append((time.perf_counter() - t) * 1000)
    return dict(size=size, kind=f"matcher ({hash_index.kind_for(size)})", build_s=load_s, memory_mb=memory,
                p50_ms=statistics.median(times), p99_ms=sorted(times)[int(len(times) * 0.99)], recall=1.0)


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'entries':>10} {'index':<22} {'build s':>8} {'memory MB':>10} {'p50 ms/image':>13} {'p99 ms':>8} {'found':>6}")
    for r in rows:
        print(f"{r['size']:>10,} {r['kind']:<22} {r['build_s']:>8.2f} {r['memory_mb']:>10.0f} {r['p50_ms']:>13.3f} "
              f"{r['p99_ms']:>8.3f} {r['recall']:>6.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200, help="images looked up per index (8 variants each)")
    parser.add_argument("--threads", type=int, default=1, help="faiss's OpenMP threads (a server matches on many threads)")
    parser.add_argument("--sizes", default="100000,1000000", help="bank sizes, comma-separated")
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW (slow to build) past this size")
    parser.add_argument("--ten-million", action="store_true",
                        help="add 10M, flat only: multi-index hashing would need ~8 GB (10x its 1M memory)")
    parser.add_argument("--robust", type=int, default=300, help="banked photos re-posted for the robustness table")
    parser.add_argument("--unrelated", type=int, default=1000, help="other photos for the false-match table")
    parser.add_argument("--bank-size", type=int, default=1_000_000, help="entries of the false-match and cost bank")
    parser.add_argument("--cost", action="store_true", help="also the real server's throughput with and without the bank")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients of the cost table")
    parser.add_argument("--cost-seconds", type=float, default=30.0, help="load time per server in the cost table")
    parser.add_argument("--cost-backend", default="onnx", help="--backend of the cost table's servers (all the same)")
    parser.add_argument("--quick", action="store_true", help="only issue 22's tables (3-5): no hashing or index tables")
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, faiss {faiss.__version__} "
          f"on {args.threads} thread(s)")
    if not SHARED.is_dir():
        print(f"\n{SHARED} is absent: no hashing, robustness or false-match table")
    elif args.quick:
        bench_issue22(args)
        return
    else:
        bench_hashing(photos(args.photos))
    rng = np.random.default_rng(0)
    rows = []
    sizes = [int(s) for s in args.sizes.split(",")] + ([10_000_000] if args.ten_million else [])
    for size in sizes:
        if size >= 10_000_000:
            rows += bench_index(size, [hash_index.FLAT], args.queries, rng)
            print_rows(rows[-1:])
            continue
        kinds = [hash_index.FLAT, hash_index.MULTIHASH] + ([hash_index.HNSW] if size <= args.hnsw_max else [])
        rows += bench_index(size, kinds, args.queries, rng)
        rows.append(bench_matcher(size, args.queries, rng))
        print_rows(rows[-len(kinds) - 1:])
    print("\nAll sizes")
    print_rows(rows)
    if SHARED.is_dir():
        bench_issue22(args)


if __name__ == "__main__":
    main()
