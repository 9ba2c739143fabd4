"""Issue 22's "Measure it" tables for the PDQ signal (`python -m bench.hashes --quick`): robustness to
re-posts (bench/reposts.py), false matches against a 1M-entry bank and among real photos, and the
real server's throughput with the bank loaded against none (--cost). The embedding signal is not
built yet: every table is PDQ's alone, and says so."""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import psutil

from bench.reposts import REPOSTS
from server.core import hash_index, pdq

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
THRESHOLDS = (16, 24, 31, 40)
NO_EMBEDDING = ("The embedding signal (issue 22's second signal, for crops and frames) is not built yet: "
                "these tables are PDQ's alone, so 'combined' is PDQ's too.")


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between every row of a (n, 32) and every row of b (m, 32): (n, m)."""
    out = np.zeros((len(a), len(b)), dtype=np.int32)
    for k in range(pdq.HASH_BYTES):
        out += POPCOUNT[a[:, k, None] ^ b[None, :, k]]
    return out


def photo_files(count: int, seed: int = 0) -> list[Path]:
    """`count` photo files of ../shared/data spread evenly over its folders, byte-identical copies
    dropped, then shuffled (so that any split of them mixes the folders)."""
    import hashlib

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



def load_hashed(files: list[Path]) -> tuple[list[Path], list[np.ndarray], list[pdq.PdqDihedral], int]:
    """The files that decode and hash at quality >= 50, their pixels and variants; and how many did not."""
    kept, images, hashes, skipped = [], [], [], 0
    for p in files:
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if im is None:
            skipped += 1
            continue
        variants = pdq.dihedral(im)
        if not variants.usable:
            skipped += 1
            continue
        kept.append(p)
        images.append(im)
        hashes.append(variants)
    return kept, images, hashes, skipped


def bench_robustness(images: list[np.ndarray], hashes: list[pdq.PdqDihedral], skipped: int, asked: int) -> list[dict]:
    bank = np.stack([h.as_array()[0] for h in hashes])
    print(f"\nRobustness: {len(images)} banked photos of ../shared/data ({asked} drawn, {skipped} skipped at PDQ quality "
          f"< {pdq.MIN_QUALITY}); a copy counts when any of its 8 dihedral variants is within {pdq.MATCH_DISTANCE} bits "
          f"of its own photo's hash; 'wrong' counts copies within {pdq.MATCH_DISTANCE} bits of another banked photo; "
          f"'low q' copies fall below quality {pdq.MIN_QUALITY}, which the server neither matches nor stores "
          f"(they count as missed).\n{NO_EMBEDDING}\n")
    print(f"{'re-post':<20} {'as is':>6} {'matched':>8} {'target':>7} {'met':>4} {'median bits':>12} {'wrong':>6} {'low q':>6}")
    rows = []
    for name, change, target in REPOSTS:
        plain = matched = wrong = low = 0
        own = []
        for i, im in enumerate(images):
            copy = pdq.dihedral(change(im))
            d = hamming(copy.as_array(), bank)  # (8, photos)
            best = d.min(axis=0)
            own.append(int(best[i]))
            if not copy.usable:
                low += 1
                continue
            plain += d[0, i] <= pdq.MATCH_DISTANCE
            matched += best[i] <= pdq.MATCH_DISTANCE
            wrong += bool((np.delete(best, i) <= pdq.MATCH_DISTANCE).any())
        n = len(images)
        row = dict(change=name, as_is=plain / n, matched=matched / n, target=target, met=matched / n >= target,
                   median_bits=statistics.median(own), wrong=wrong, low_quality=low)
        rows.append(row)
        print(f"{name:<20} {row['as_is']:>6.0%} {row['matched']:>8.0%} {target:>6.0%} {'yes' if row['met'] else 'no':>4} "
              f"{row['median_bits']:>12.0f} {wrong:>6} {low:>6}", flush=True)
    return rows


def real_pair_distances(names: list[Path], hashes: list[pdq.PdqDihedral]) -> np.ndarray:
    """Every pair of distinct real photos: the least distance between one's 8 variants and the other's
    hash (as matching measures it), both ways, the smaller; prints the distribution."""
    codes = np.stack([h.as_array() for h in hashes])  # (n, 8, 32)
    n = len(codes)
    originals = codes[:, 0]
    least = np.full((n, n), 256, dtype=np.int32)
    for v in range(8):
        least = np.minimum(least, hamming(codes[:, v], originals))
    least = np.minimum(least, least.T)
    upper = least[np.triu_indices(n, 1)]
    pairs = len(upper)
    print(f"\nReal unrelated pairs: {n} photos of ../shared/data (quality >= {pdq.MIN_QUALITY}, no byte-identical "
          f"files), {pairs:,} pairs, least distance over the 8 variants")
    q = np.percentile(upper, [0.01, 0.1, 1, 5, 50])
    print(f"  min {upper.min()}, 0.01% {q[0]:.0f}, 0.1% {q[1]:.0f}, 1% {q[2]:.0f}, 5% {q[3]:.0f}, median {q[4]:.0f} bits")
    print(f"{'threshold':>10} {'pairs within':>13} {'per pair':>10}")
    for t in THRESHOLDS:
        k = int((upper <= t).sum())
        print(f"{t:>10} {k:>13,} {k / pairs:>10.2e}")
    close = np.argwhere(np.triu(least <= max(THRESHOLDS), 1))
    if len(close):
        order = np.argsort([least[i, j] for i, j in close])[:12]
        print("  the closest pairs (a look at them tells a duplicate or near-copy in the data set from a true false match):")
        for i, j in close[order]:
            print(f"    {least[i, j]:>3} bits  {names[i].relative_to(SHARED)}  ~  {names[j].relative_to(SHARED)}")
    beyond = upper[upper > max(THRESHOLDS)]
    print(f"  every other pair differs in more than {max(THRESHOLDS)} bits (the nearest in {beyond.min()})")
    return upper


def bench_false_matches(banked: list[pdq.PdqDihedral], queries: list[pdq.PdqDihedral], bank_size: int,
                        rng: np.random.Generator) -> list[dict]:
    """The unrelated photos' variants against the banked photos' hashes plus random ones to `bank_size`."""
    real = np.stack([h.as_array()[0] for h in banked])
    codes = np.concatenate([real, rng.integers(0, 256, (bank_size - len(real), pdq.HASH_BYTES), dtype=np.uint8)])
    t = time.perf_counter()
    index = hash_index.build(codes, hash_index.FLAT)
    block = np.stack([q.as_array() for q in queries])  # (queries, 8, 32)
    query_rows, rows, dists = hash_index.within(index, block.reshape(-1, pdq.HASH_BYTES), max(THRESHOLDS))
    search_s = time.perf_counter() - t
    image = query_rows // 8
    pairs: dict[tuple[int, int], int] = {}
    for q, r, d in zip(image.tolist(), rows.tolist(), dists.tolist()):
        pairs[(q, r)] = min(d, pairs.get((q, r), 256))
    comparisons = len(queries) * bank_size
    print(f"\nFalse matches: {len(queries)} unrelated photos of ../shared/data (disjoint from the banked ones) x 8 variants "
          f"against a bank of {bank_size:,} entries ({len(real)} real hashes of the banked photos + "
          f"{bank_size - len(real):,} random ones), flat index, {search_s:.1f} s; a comparison is one photo (any variant) "
          f"against one entry: {comparisons:,} comparisons. Random hashes are an optimistic model of unrelated photos "
          f"(two random hashes differ in 128 +- 8 bits): the real pairs above are the honest measure.")
    print(f"{'threshold':>10} {'pairs (real)':>13} {'pairs (random)':>15} {'per comparison':>15} {'photos matched':>15} {'per query':>10}")
    rows_out = []
    for t in THRESHOLDS:
        hit = [(q, r) for (q, r), d in pairs.items() if d <= t]
        real_hits = sum(r < len(real) for _, r in hit)
        photos_hit = len({q for q, _ in hit})
        row = dict(threshold=t, real=real_hits, random=len(hit) - real_hits, per_comparison=len(hit) / comparisons,
                   photos=photos_hit, per_query=photos_hit / len(queries))
        rows_out.append(row)
        print(f"{t:>10} {real_hits:>13} {row['random']:>15} {row['per_comparison']:>15.2e} {photos_hit:>15} {row['per_query']:>10.2%}")
    return rows_out


def fill_bank_database(path: Path, real: list[pdq.PdqDihedral], size: int, rng: np.random.Generator) -> str:
    """A SQLite review database (migrated as wildscreen-review does) with one REVIEW bank of `size`
    entries: the real hashes first, random ones after, in one bulk insert (BankStore.import_entries
    checks each line and would take minutes at a million)."""
    import sqlite3

    from server.review.banks import BankStore
    from server.review.database import connect

    url = f"sqlite:///{path}"
    engine = connect(url)
    BankStore(engine).create("bench", "REVIEW", "bench")
    engine.dispose()
    codes = np.concatenate([np.stack([h.as_array()[0] for h in real]),
                            rng.integers(0, 256, (size - len(real), pdq.HASH_BYTES), dtype=np.uint8)])
    hexes = list(dict.fromkeys(c.tobytes().hex() for c in codes))
    added = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat(sep=" ")
    db = sqlite3.connect(path)
    (bank_id,) = db.execute("SELECT id FROM banks WHERE name = 'bench'").fetchone()
    db.executemany("INSERT INTO bank_entries (seq, bank_id, hash, quality, label, organisation, reference_id, added_at, added_by) "
                   "VALUES (?, ?, ?, 100, 'known_trafficking_image', 'bench', ?, ?, 'bench')",
                   ((i + 1, bank_id, h, f"C-{i}", added) for i, h in enumerate(hexes)))
    db.execute("UPDATE bank_counter SET seq = ? WHERE id = 1", (len(hexes),))
    db.commit()
    db.close()
    return url


def bench_cost(files: list[Path], real: list[pdq.PdqDihedral], size: int, clients: int, seconds: float,
               rng: np.random.Generator, backend: str) -> list[dict]:
    """Screening throughput of the real server at `clients` concurrent clients: no bank, a `size`-entry
    bank, no bank again (drift shows as the two baselines' difference), one after the other in this run
    (same images, same model, the same `backend`: auto would time the backends at each start and may
    pick another one for each server)."""
    import tempfile

    import grpc

    from bench.load import ClientProcesses
    from tests.support.server_process import ServerProcess
    from wildscreen.client import Connection
    from wildscreen.v1 import screening_pb2 as pb
    from wildscreen.v1 import screening_pb2_grpc as pb_grpc

    images = [p.read_bytes() for p in files]
    weights = Path(__file__).resolve().parents[1] / "weights"
    rows = []
    with tempfile.TemporaryDirectory(prefix="wildscreen-bench-banks-") as tmp:
        t = time.perf_counter()
        url = fill_bank_database(Path(tmp) / "review.sqlite3", real, size, rng)
        fill_s = time.perf_counter() - t
        for label, extra in (("no bank", []), (f"{size:,}-entry bank", ["--banks-database-url", url]), ("no bank (again)", [])):
            t = time.perf_counter()
            with ServerProcess(weights, *extra, "--backend", backend, "--log-level", "WARNING",
                               startup_timeout_s=600) as proc, ClientProcesses(1) as load:
                start_s = time.perf_counter() - t
                rss = psutil.Process(proc.proc.pid).memory_info().rss / 2**20
                with grpc.insecure_channel(proc.target) as channel:
                    info = pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
                entries = sum(b.entries for b in info.banks)
                connection = Connection(target=proc.target)
                load.run(connection, images, clients, 3.0)  # warm up
                report = load.run(connection, images, clients, seconds)
                s = report.summary()
                rows.append(dict(name=label, entries=entries, start_s=start_s, rss_mb=rss, images_per_s=s["goodput_per_s"],
                                 p50_ms=s["p50_ms"], p99_ms=s["p99_ms"], codes=s["codes"], model=info.model.version,
                                 device=info.device, backend=info.backend))
    base = (rows[0]["images_per_s"] + rows[2]["images_per_s"]) / 2
    print(f"\nCost: the real server (model {rows[0]['model']}, {rows[0]['backend']} on {rows[0]['device']}), {clients} "
          f"closed-loop clients for {seconds:.0f} s over {len(images)} photos of ../shared/data, without and with the bank "
          f"(SQLite, filled in {fill_s:.0f} s; 'start s' includes loading it)\n")
    print(f"{'server':<22} {'entries':>10} {'start s':>8} {'RSS MB':>7} {'images/s':>9} {'vs none':>8} {'p50 ms':>8} {'p99 ms':>8}  backend, codes ('vs none': the two baselines' mean)")
    for r in rows:
        print(f"{r['name']:<22} {r['entries']:>10,} {r['start_s']:>8.1f} {r['rss_mb']:>7.0f} {r['images_per_s']:>9.2f} "
              f"{r['images_per_s'] / base - 1:>+8.1%} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}  {r['backend']} {r['codes']}")
    return rows


def bench_issue22(args) -> None:
    files = photo_files(args.robust + args.unrelated)
    banked_files, unrelated_files = files[:args.robust], files[args.robust:]
    kept, images, banked, skipped = load_hashed(banked_files)
    bench_robustness(images, banked, skipped, len(banked_files))
    q_kept, _, queries, q_skipped = load_hashed(unrelated_files)
    print(f"\nUnrelated photos: {len(q_kept)} of {len(unrelated_files)} ({q_skipped} skipped at quality < {pdq.MIN_QUALITY})")
    real_pair_distances(kept + q_kept, banked + queries)
    rng = np.random.default_rng(22)
    bench_false_matches(banked, queries, args.bank_size, rng)
    if args.cost:
        bench_cost(q_kept[:64], banked, args.bank_size, args.clients, args.cost_seconds, rng, args.cost_backend)
    else:
        print("\nCost (throughput with a bank loaded against none): not run (--cost)")
