"""`python -m bench.sweep`: the dynamic-batching defaults, chosen from measurements.

Runs the server with each max_batch_size x max_batch_delay_ms pair and prints images/s and p50/p95
at the given concurrencies, one table; the defaults in server/config.py come from it.

    python -m bench.sweep --batch-sizes 1 4 8 16 --delays-ms 0 2 10 --concurrency 1 16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.phases import bench_server, listing_images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--delays-ms", type=float, nargs="+", default=[0, 2, 10])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=Path("bench/sweep.json"))
    args = parser.parse_args(argv)
    images, origin = listing_images(args.shared, args.count, 0, 800, 1600)
    print(f"batching sweep {time.strftime('%Y-%m-%d')}: {len(images)} JPEGs 800-1600 px ({origin}), {args.seconds:.0f} s per point", flush=True)
    header = f"{'batch':>5} {'delay ms':>8} " + " ".join(f"{'c=' + str(c) + ' img/s':>12} {'p50':>7} {'p95':>7}" for c in args.concurrency)
    print(header, flush=True)
    results = []
    for size in args.batch_sizes:
        for delay in args.delays_ms:
            if size == 1 and delay != args.delays_ms[0]:
                continue  # a batch of one never waits
            server_args = ["--device", args.device, "--max-batch-size", str(size), "--max-batch-delay-ms", str(delay), "--max-queue-size", "128"]
            rows = bench_server(args.weights, images, args.concurrency, args.seconds, server_args)
            results.append({"max_batch_size": size, "max_batch_delay_ms": delay, "rows": rows})
            print(f"{size:>5} {delay:>8g} " + " ".join(f"{r['images_per_s']:>12.1f} {r['p50_ms']:>7.0f} {r['p95_ms']:>7.0f}" for r in rows), flush=True)
    args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
