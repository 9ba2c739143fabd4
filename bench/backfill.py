"""`python -m bench.backfill`: images/s of a Ray Data backfill against the same screening in process.

Same images (listing-sized JPEGs from ../shared/data, synthetic without it), same model, same
CPUs, same batch size:
1. in-process   `BatchScreener` called on batches in this process: the engine, decoder and rule
                alone (model load not counted);
2. ray          `wildscreen-backfill` on a local Ray, for each --actors x --cpus-per-actor layout.

A Ray run pays a fixed cost (actor processes start, import torch, load the model) and then a
per-image cost. Both are shown: images/s over the whole run, and the steady rate, from the
`screened_at` times the rows carry (rows after the first batch / time from the first batch to the
last): what a catalogue of millions sees.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from bench.phases import listing_images
from server.core.registry import backend_choices



def in_process(weights: Path, paths: list[str], threads: int, batch_size: int, backend: str) -> dict:
    import pyarrow as pa

    from server.backfill.screener import BatchScreener

    screener = BatchScreener(weights, threads=threads, backend=backend)
    screener(pa.table({"id": paths[:batch_size], "path": paths[:batch_size]}))  # warm up
    start = time.perf_counter()
    for i in range(0, len(paths), batch_size):
        chunk = paths[i:i + batch_size]
        screener(pa.table({"id": chunk, "path": chunk}))
    seconds = time.perf_counter() - start
    return {"name": f"in-process ({threads} threads)", "images": len(paths), "seconds": seconds,
            "images_per_s": len(paths) / seconds, "fixed_s": None, "steady_images_per_s": len(paths) / seconds}


def on_ray(weights: Path, folder: Path, actors: int, cpus: float, batch_size: int, backend: str) -> dict:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from server.backfill.backfill import BackfillOptions, backfill

    with tempfile.TemporaryDirectory() as out:
        summary = backfill(BackfillOptions(source=str(folder), out=out, weights=str(weights), actors=actors,
                                           cpus_per_actor=cpus, batch_size=batch_size, backend=backend))
        times = pc.cast(pq.ParquetDataset(out).read()["screened_at"], "int64").to_numpy() / 1000.0
    first, last = times.min(), times.max()
    after_first = int((times > first).sum())
    steady = after_first / (last - first) if last > first else float("nan")
    return {"name": f"ray {actors} x {cpus:g} CPU", "images": summary.screened, "seconds": summary.seconds,
            "images_per_s": summary.images_per_s, "fixed_s": summary.seconds - (last - first),
            "steady_images_per_s": steady}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=Path("weights"))
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("WILDSCREEN_SHARED", "../shared")))
    p.add_argument("--count", type=int, default=240, help="images")
    p.add_argument("--min-side", type=int, default=800)
    p.add_argument("--max-side", type=int, default=1600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--backend", default="torch", choices=backend_choices(), help="as the server's --backend (server/core/registry.py)")
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs for each path")
    p.add_argument("--layouts", nargs="+", default=None, help="ray layouts as ACTORSxCPUS (default: 1xN and Nx1)")
    p.add_argument("--json", type=Path, default=Path("bench/backfill.json"))
    args = p.parse_args()

    from server.backfill.backfill import start_ray

    images, origin = listing_images(args.shared, args.count, 0, args.min_side, args.max_side)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "all"
        folder.mkdir()
        for i, data in enumerate(images):
            (folder / f"{i:05d}.jpg").write_bytes(data)
        paths = sorted(str(p) for p in folder.iterdir())
        rows = [in_process(args.weights, paths, args.cpus, args.batch_size, args.backend)]
        start_ray(args.cpus)
        layouts = args.layouts or [f"1x{args.cpus}"] + ([f"{args.cpus}x1"] if args.cpus > 1 else [])
        for layout in layouts:
            actors, cpus = layout.split("x")
            rows.append(on_ray(args.weights, folder, int(actors), float(cpus), args.batch_size, args.backend))
    header = (f"backfill, {len(images)} {origin} JPEGs ({args.min_side}-{args.max_side} px), weights {args.weights}, "
              f"batch {args.batch_size}, {args.backend}, {args.cpus} CPUs of {platform.processor() or platform.machine()}")
    print(f"\n{header}\n")
    print(f"{'':<24} {'images':>7} {'seconds':>8} {'images/s':>9} {'start s':>8} {'steady images/s':>16}")
    for r in rows:
        fixed = "" if r["fixed_s"] is None else f"{r['fixed_s']:.1f}"
        print(f"{r['name']:<24} {r['images']:>7} {r['seconds']:>8.1f} {r['images_per_s']:>9.1f} {fixed:>8} "
              f"{r['steady_images_per_s']:>16.1f}")
    base = rows[0]["steady_images_per_s"]
    print("\nsteady rate relative to in-process: " + ", ".join(f"{r['name']} {r['steady_images_per_s'] / base:.2f}" for r in rows[1:]))
    args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
