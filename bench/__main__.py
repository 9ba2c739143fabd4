"""`make bench` / `python -m bench`: where the time goes, on the same images and the same model.

1. naive   Ultralytics `YOLO(...).predict`, one image at a time, in-process: what a user writes;
2. engine  our pipeline in-process: decode threads feeding batches to the engine (and its
           single-image latency), on the backend --backend picks; "engine int8" the same forced
           onto the int8 export when the model has one (whether or not auto would serve it);
3. server  our gRPC server over loopback, closed-loop clients at several concurrencies.

Prints a table (images/s, p50/p95/p99 latency, mean batch formed, CPU%/GPU util, ratios) and the
per-stage times, and writes the same as JSON. Images: listing-sized JPEGs (800 to 1600 px) made
from ../shared/data when present, synthetic otherwise.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.phases import bench_engine, bench_naive, bench_server, describe_model, listing_images
from server.core.registry import BACKENDS
from server.offline import stay_offline


def in_fresh_process(function, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def print_table(rows: list[dict], stages: dict, ratios: dict, header: str) -> None:
    print(f"\n{header}\n")
    print(f"{'':<14} {'images/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean batch':>11} {'CPU %':>6} {'GPU %':>6}")
    for r in rows:
        cpu = r.get("server_cpu_percent")
        gpu = r.get("gpu_util_percent")
        print(f"{r['name']:<14} {r['images_per_s']:>9.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['mean_batch']:>11.2f} {'' if cpu is None else f'{cpu:.0f}':>6} {'' if gpu is None else f'{gpu:.0f}':>6}")
    print("\nper image, ms: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))


def main(argv: list[str] | None = None) -> int:
    stay_offline()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("WILDSCREEN_SHARED", "../shared")))
    parser.add_argument("--count", type=int, default=48, help="images")
    parser.add_argument("--min-side", type=int, default=800)
    parser.add_argument("--max-side", type=int, default=1600)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-batch-delay-ms", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=15.0, help="per concurrency level, and at least this long for naive and engine")
    parser.add_argument("--server-workers", type=int, default=1, help="the server's --workers (processes sharing the port)")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="spread the clients over this many processes (on a GPU machine, where one Python client process is the limit)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--json", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args(argv)

    images, origin = listing_images(args.shared, args.count, 0, args.min_side, args.max_side)
    model, gpu = in_fresh_process(describe_model, args.weights, args.device, args.backend, args.max_batch_size)
    cores = os.cpu_count() or 1
    header = (f"wildscreen bench {time.strftime('%Y-%m-%d')}: model {model['version']} ({model['input_size']} px, backend {model['backend']}, "
              f"device {model['device']}), {len(images)} JPEGs {args.min_side}-{args.max_side} px ({origin}); "
              f"{platform.processor() or platform.machine()}, {cores} cores{', ' + gpu if gpu else ''}; "
              f"server max_batch_size {args.max_batch_size}, max_batch_delay_ms {args.max_batch_delay_ms}, workers {args.server_workers}")
    print(header, flush=True)
    print(f"backend choice: {model['backend_reason']}", flush=True)
    rows, ratios = [], {}
    if not args.skip_naive:
        rows.append(in_fresh_process(bench_naive, args.weights / model["file"], images, model["input_size"], "0" if gpu else "cpu",
                                     args.seconds, args.weights))
        print("naive done", flush=True)
    engine_row, stages = in_fresh_process(bench_engine, args.weights, args.device, args.backend, images, args.max_batch_size, cores,
                                          "engine", args.seconds)
    rows.append(engine_row)
    print("engine done", flush=True)
    int8 = BACKENDS["int8"]
    if int8.export.manifest_key() in model["exports"] and not gpu and model["backend"] != int8.reports:
        rows.append(in_fresh_process(bench_engine, args.weights, "cpu", int8.name, images, args.max_batch_size, cores, "engine int8",
                                     args.seconds)[0])
        ratios["engine int8/engine"] = rows[-1]["images_per_s"] / engine_row["images_per_s"]
        print("engine int8 done", flush=True)
    server_args = ["--device", args.device, "--backend", args.backend, "--max-batch-size", str(args.max_batch_size),
                   "--max-batch-delay-ms", str(args.max_batch_delay_ms), "--max-queue-size", str(max(64, 2 * max(args.concurrency))),
                   "--workers", str(args.server_workers)]
    server_rows = bench_server(args.weights, images, args.concurrency, args.seconds, server_args, args.client_processes)
    rows += server_rows
    by_clients = {r["clients"]: r for r in server_rows}
    reference = by_clients.get(16) or server_rows[-1]
    ratios[f"server(c={reference['clients']})/engine"] = reference["images_per_s"] / engine_row["images_per_s"]
    if not args.skip_naive:
        ratios[f"server(c={reference['clients']})/naive"] = reference["images_per_s"] / rows[0]["images_per_s"]
    if 1 in by_clients:
        ratios["server p50 c=1 minus engine single p50 (ms)"] = by_clients[1]["p50_ms"] - engine_row["single_image_p50_ms"]
        ratios["  of which inside the server (server-reported p50 minus engine)"] = by_clients[1]["server_p50_ms"] - engine_row["single_image_p50_ms"]
        print("server c=1, its own p50 split, ms: " + ", ".join(
            f"{stage} {by_clients[1][f'server_{stage}_p50_ms']:.1f}" for stage in ("decode", "queue", "inference")))
    print_table(rows, stages, ratios, header)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"header": header, "backend_reason": model["backend_reason"], "rows": rows, "stages_ms": stages, "ratios": ratios}, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
