"""Issue 22's cost table: the real server's throughput with a big bank loaded against none, in one run.

The bank is a SQLite review database (migrated as wildscreen-review does) whose entries carry both
signals: a PDQ hash and an embedding of the served model (real ones for the banked photos, synthetic
ones from bench.embeddings.GaussianModel for the rest), so that the server loads, builds and searches
both indexes on every screen.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil

from bench.embeddings import GaussianModel
from server.core import pdq


def fill_bank_database(path: Path, codes: np.ndarray, vectors: np.ndarray, model_name: str, size: int,
                       model: GaussianModel, rng: np.random.Generator) -> str:
    """One REVIEW bank of `size` entries: the real (n, 32) `codes` with their `vectors` (embeddings of
    `model_name`) first, random hashes with synthetic vectors after, in one bulk insert
    (BankStore.import_entries checks each line and would take minutes at a million)."""
    import sqlite3

    from server.review.banks import BankStore
    from server.review.database import connect

    url = f"sqlite:///{path}"
    engine = connect(url)
    BankStore(engine).create("bench", "REVIEW", "bench")
    engine.dispose()
    added = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat(sep=" ")
    db = sqlite3.connect(path)
    (bank_id,) = db.execute("SELECT id FROM banks WHERE name = 'bench'").fetchone()
    seen: set[bytes] = set()

    def rows():
        seq = 0
        chunks = [(codes, vectors)]
        for start in range(len(codes), size, 65_536):
            n = min(65_536, size - start)
            chunks.append((rng.integers(0, 256, (n, pdq.HASH_BYTES), dtype=np.uint8), model.sample(n, rng)))
        for chunk_codes, chunk_vectors in chunks:
            packed = np.ascontiguousarray(chunk_vectors, dtype="<f2")  # server.core.embedding.pack, row by row
            for code, vector in zip(chunk_codes, packed):
                key = code.tobytes()
                if key in seen:  # one entry per (bank, hash), as the schema requires
                    continue
                seen.add(key)
                seq += 1
                yield seq, bank_id, key.hex(), f"C-{seq}", added, vector.tobytes(), model_name

    db.executemany("INSERT INTO bank_entries (seq, bank_id, hash, quality, label, organisation, reference_id, added_at, "
                   "added_by, embedding, embedding_model) VALUES (?, ?, ?, 100, 'known_trafficking_image', 'bench', ?, ?, "
                   "'bench', ?, ?)", rows())
    db.execute("UPDATE bank_counter SET seq = ? WHERE id = 1", (len(seen),))
    db.commit()
    db.close()
    return url


def bench_cost(files: list[Path], codes: np.ndarray, vectors: np.ndarray, model_name: str, size: int,
               model: GaussianModel, clients: int, seconds: float, rng: np.random.Generator, backend: str) -> list[dict]:
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
        url = fill_bank_database(Path(tmp) / "review.sqlite3", codes, vectors, model_name, size, model, rng)
        fill_s = time.perf_counter() - t
        db_mb = (Path(tmp) / "review.sqlite3").stat().st_size / 2**20
        for label, extra in (("no bank", []), (f"{size:,}-entry bank", ["--banks-database-url", url]), ("no bank (again)", [])):
            t = time.perf_counter()
            with ServerProcess(weights, *extra, "--backend", backend, "--log-level", "WARNING",
                               startup_timeout_s=900) as proc, ClientProcesses(1) as load:
                start_s = time.perf_counter() - t
                rss = psutil.Process(proc.proc.pid).memory_info().rss / 2**20
                with grpc.insecure_channel(proc.target) as channel:
                    info = pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
                connection = Connection(target=proc.target)
                load.run(connection, images, clients, 3.0)  # warm up
                report = load.run(connection, images, clients, seconds)
                s = report.summary()
                rows.append(dict(name=label, entries=sum(b.entries for b in info.banks),
                                 vectors=sum(b.embeddings for b in info.banks), start_s=start_s, rss_mb=rss,
                                 images_per_s=s["goodput_per_s"], p50_ms=s["p50_ms"], p99_ms=s["p99_ms"], codes=s["codes"],
                                 model=info.model.version, device=info.device, backend=info.backend,
                                 embedding=info.embedding))
    base = (rows[0]["images_per_s"] + rows[2]["images_per_s"]) / 2
    print(f"\nCost: the real server (model {rows[0]['model']}, {rows[0]['backend']} on {rows[0]['device']}, embedding "
          f"{rows[1]['embedding'] or 'none'}), {clients} closed-loop clients for {seconds:.0f} s over {len(images)} unrelated "
          f"photos of ../shared/data, without and with the bank (SQLite, {db_mb:.0f} MB, filled in {fill_s:.0f} s; every "
          f"entry has a PDQ hash and an embedding of the served model: {len(codes)} real, the rest random hashes and "
          f"synthetic vectors; 'start s' includes loading it)\n")
    print(f"{'server':<22} {'entries':>10} {'vectors':>10} {'start s':>8} {'RSS MB':>7} {'images/s':>9} {'vs none':>8} "
          f"{'p50 ms':>8} {'p99 ms':>8}  backend, codes ('vs none': the two baselines' mean)")
    for r in rows:
        print(f"{r['name']:<22} {r['entries']:>10,} {r['vectors']:>10,} {r['start_s']:>8.1f} {r['rss_mb']:>7.0f} "
              f"{r['images_per_s']:>9.2f} {r['images_per_s'] / base - 1:>+8.1%} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}  "
              f"{r['backend']} {r['codes']}")
    return rows
