"""`wildscreen-backfill` / `python -m server.backfill`: screen a whole catalogue once, on Ray Data.

    list (id, path) rows -> skip ids already in --out -> map_batches(BatchScreener) on an actor pool
    -> write_parquet(--out, append)

Each actor loads the model once and screens batches of rows (`server.backfill.screener`); Ray Data
streams blocks through the pool, shows its progress bars and writes each finished block as a
Parquet file. A rerun with the same --out reads the ids already written and screens only the rest,
so a backfill killed half-way (or fed a grown list) is resumed by running it again.

Locally it starts a Ray instance of --num-cpus; under `ray job submit` (or with RAY_ADDRESS) it joins
the cluster. Ray is the optional `backfill` extra: `pip install 'wildscreen[backfill]'`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from server.backfill.sources import FORMATS, list_inputs, not_screened, screened_ids
from server.core.registry import backend_choices
from server.offline import stay_offline
from server.settings import HelpFormatter


@dataclass(frozen=True)
class BackfillOptions:
    source: str
    out: str
    weights: str = "weights"
    version: str | None = None
    format: str = "auto"
    path_column: str = "path"
    id_column: str = "id"
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    batch_size: int = 16
    rows_per_block: int = 256
    backend: str = "auto"
    min_confidence: float = 0.0
    max_detections: int = 100
    limit: int = 0
    """Screen at most this many of the rows not yet screened (0 = all)."""


@dataclass(frozen=True)
class BackfillSummary:
    listed: int
    skipped: int
    screened: int
    seconds: float
    counts: dict[str, int]

    @property
    def images_per_s(self) -> float:
        return self.screened / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "nothing new"
        return [f"listed {self.listed}, already screened {self.skipped}, screened now {self.screened} "
                f"in {self.seconds:.1f} s ({self.images_per_s:.1f} images/s)", f"  in the output now: {counts}"]


def backfill(options: BackfillOptions) -> BackfillSummary:
    """Screen what is listed and not yet in `options.out`; Ray must be initialised (see `main`).
    Results stream to --out block by block, so what finished before a crash stays done."""
    import ray

    inputs = list_inputs(options.source, options.format, options.path_column, options.id_column)
    pending = not_screened(inputs, screened_ids(options.out))
    todo = pending.slice(0, options.limit) if options.limit else pending
    if not len(todo):  # a rerun with nothing new still says what the output holds
        done = outcome_counts(options.out) if len(pending) < len(inputs) else {}
        return BackfillSummary(len(inputs), len(inputs) - len(pending), 0, 0.0, done)
    start = time.perf_counter()
    # At least a few blocks per actor, so that a short run keeps every actor busy too.
    per_block = max(options.batch_size, min(options.rows_per_block, math.ceil(len(todo) / (4 * options.actors))))
    blocks = [todo.slice(i, per_block) for i in range(0, len(todo), per_block)]
    # Under `ray job submit --working-dir .` every worker runs in its own copy of the job's folder:
    # a relative --weights is then found there. Locally, the driver's folder is the one meant.
    shipped = bool(ray.get_runtime_context().runtime_env.get("working_dir"))
    weights = options.weights if shipped else str(Path(options.weights).resolve())
    ray.data.from_arrow(blocks).map_batches(
        _screener_class(),
        fn_constructor_kwargs=dict(
            weights=weights, version=options.version, device="cuda" if options.gpus_per_actor else "cpu",
            backend=options.backend, threads=max(1, math.floor(options.cpus_per_actor)),
            min_confidence=options.min_confidence, max_detections=options.max_detections,
        ),
        batch_size=options.batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=options.actors),
        num_cpus=options.cpus_per_actor, num_gpus=options.gpus_per_actor or None,
    ).write_parquet(options.out, mode="append", ray_remote_args={"num_cpus": 0})  # never queued behind the actors
    seconds = time.perf_counter() - start
    return BackfillSummary(len(inputs), len(inputs) - len(pending), len(todo), seconds, outcome_counts(options.out))


def outcome_counts(out: str) -> dict[str, int]:
    """Rows per verdict (and "error") in the whole output folder, over all runs."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(out, format="parquet").to_table(columns=["verdict", "error"])
    outcome = pc.if_else(pc.is_null(table["error"]), table["verdict"], "error")
    return {row["values"]: row["counts"] for row in pc.value_counts(outcome).to_pylist()}


def _screener_class():
    """The class Ray instantiates once per actor (imported lazily: this module loads without torch)."""
    from server.backfill.screener import BatchScreener

    return BatchScreener


def parse_args(argv: Sequence[str] | None) -> tuple[BackfillOptions, argparse.Namespace]:
    defaults = HelpFormatter
    p = argparse.ArgumentParser(prog="wildscreen-backfill", description=__doc__.split("\n\n")[0], formatter_class=defaults)
    p.add_argument("source", help="a folder of images, a list file (a path or URI a line) or Parquet with a path column; "
                                  "local or a URI (s3://, gs://, file://)")
    p.add_argument("--out", required=True, help="folder of result Parquet files; rerunning with it resumes")
    p.add_argument("--weights", default="weights", help="weights folder (manifest.json); on a cluster, a path every node sees")
    p.add_argument("--version", help="model version (default: the current one)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="auto: .parquet -> parquet, folder -> folder, else a list")
    p.add_argument("--path-column", default="path", help="Parquet input: the column of paths/URIs")
    p.add_argument("--id-column", default="id", help="Parquet input: the column of ids (default: the path)")
    p.add_argument("--actors", type=int, default=1, help="model replicas (Ray actors), each loads the model once")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs reserved per actor (also its torch threads)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor (e.g. 1, or 0.5 for two per GPU); "
                                                                     "> 0 screens on CUDA")
    p.add_argument("--batch-size", type=int, default=16, help="images per model call")
    p.add_argument("--rows-per-block", type=int, default=256, help="most rows per Ray block: the unit of retry and of output files")
    p.add_argument("--backend", default="auto", choices=backend_choices(), help="as the server's --backend (server/core/registry.py)")
    p.add_argument("--min-confidence", type=float, default=0.0, help="list detections from here (0 = the model's default)")
    p.add_argument("--max-detections", type=int, default=100)
    p.add_argument("--limit", type=int, default=0, help="screen at most N not yet screened (0 = all)")
    p.add_argument("--num-cpus", type=int, default=0, help="a local Ray's CPUs (0 = all); ignored on a cluster")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--queue", metavar="URL", default=os.environ.get("WILDSCREEN_REVIEW_URL"),
                   help="send the REVIEW and FLAG rows, with their images, to this review service (wildscreen-review); "
                        "a rerun sends only what it does not hold yet (or WILDSCREEN_REVIEW_URL)")
    p.add_argument("--queue-key", default=os.environ.get("WILDSCREEN_REVIEW_KEY"),
                   help="API key with the review role (or WILDSCREEN_REVIEW_KEY); none needed on loopback")
    p.add_argument("--verbose", action="store_true",
                   help="Ray's own logs and the actors' output on the terminal (quiet by default)")
    args = p.parse_args(argv)
    options = BackfillOptions(**{k: v for k, v in vars(args).items() if k in BackfillOptions.__dataclass_fields__})
    return options, args


def start_ray(num_cpus: int = 0, verbose: bool = False) -> None:
    """Join the cluster under `ray job submit` (RAY_ADDRESS), else start a local Ray of `num_cpus` (0 = all).

    Quiet unless `verbose`: Ray's INFO lines, its core worker's shutdown messages (printed at ERROR
    level, they read like a failure of the run) and every actor's output (model loading chatter)
    stay in Ray's session logs (/tmp/ray/session_latest/logs), off the terminal; Ray Data's progress
    bars and our summary remain."""
    import ray

    if ray.is_initialized():
        return
    quiet = {} if verbose else {"logging_level": logging.WARNING, "log_to_driver": False}
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**quiet)
    else:
        ray.init(num_cpus=num_cpus or None, include_dashboard=False, **quiet)


def main(argv: Sequence[str] | None = None) -> int:
    stay_offline()
    try:
        import ray
    except ImportError:
        print("wildscreen-backfill: Ray is not installed; pip install 'wildscreen[backfill]'", file=sys.stderr)
        return 2
    options, args = parse_args(argv)
    start_ray(args.num_cpus, args.verbose)
    try:
        summary = backfill(options)
    except (ValueError, FileNotFoundError) as exc:
        print(f"wildscreen-backfill: {exc}", file=sys.stderr)
        return 2
    queued = None
    if args.queue and summary.counts:
        from server.backfill.review import queue_for_review  # torch-free until there is something to queue

        queued = queue_for_review(options.out, args.queue, args.queue_key)
    if args.json:
        print(json.dumps({"listed": summary.listed, "skipped": summary.skipped, "screened": summary.screened,
                          "seconds": round(summary.seconds, 2), "images_per_s": round(summary.images_per_s, 2),
                          "counts": summary.counts} | ({"queued": vars(queued)} if queued else {})))
    else:
        print("\n".join(summary.lines() + ([queued.line()] if queued else [])))
    for failure in queued.failed[:20] if queued else []:
        print(f"wildscreen-backfill: not queued: {failure}", file=sys.stderr)
    return 1 if queued and queued.failed else 0
