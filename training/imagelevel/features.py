"""Backbone features of every image-level label, cached by sha256: the slow step, done once, resumable.

    # every labelled photo of ../shared/data, Lite0 then Lite2, whole image + 2x2 and 3x3 tiles:
    python -m training.imagelevel.features --out runs/features --backbone lite0 lite2
    # the same command resumes: images whose sha256 is cached are skipped, nothing is recomputed

Writes `<out>/table.csv` (path, sha256, source, group, labels, kind: the join from labels to
features) and `<out>/<backbone>/` (see `cache.py`), plus `<backbone>/failed.csv` for photos that
would not decode. Photos are decoded by the server's decoder (EXIF orientation, alpha over white),
so the head is fitted on the pixels it will see when serving. One torch thread by default: a
background extraction must leave the other cores to everyone else.
"""

from __future__ import annotations

import argparse
import csv
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from server.core.backbone import BACKBONES, Backbone, TileGrid, load_backbone
from server.core.decoding import decode
from server.core.errors import ImageTooLarge, UndecodableImage
from server.core.manifest import sha256_of
from training.imagelevel.cache import FeatureCache
from training.imagelevel.sources import LabelledImage, image_level_table, review_export_table, shared_data

CACHE_FORMAT = 1


@dataclass
class ExtractSummary:
    cached_before: int = 0
    computed: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    backbone_seconds: float = 0.0

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.backbone_seconds / self.computed if self.computed else float("nan")


def cache_meta(backbone: Backbone, tiles: TileGrid) -> dict[str, Any]:
    """What makes two caches comparable: a cache is only extended with the same."""
    return {"format": CACHE_FORMAT, "backbone": backbone.name, "timm_name": backbone.spec.timm_name,
            "input_size": backbone.input_size, "weights_sha256": backbone.weights_sha256,
            "feature_dim": backbone.feature_dim, "tile_grids": list(tiles.grids), "tile_overlap": tiles.overlap,
            "tile_count": tiles.count, "tile_boxes": tiles.boxes.round(6).tolist(), "dtype": "float16"}


def extract(
    images: Mapping[str, Path],
    backbone: Backbone,
    cache: FeatureCache,
    tiles: TileGrid,
    batch_images: int = 8,
    shard_size: int = 128,
    progress: bool = True,
) -> ExtractSummary:
    """Compute and cache the features of every `sha256 -> path` not cached yet; flushes on Ctrl-C/SIGTERM."""
    done = cache.cached_keys()
    todo = [(key, path) for key, path in images.items() if key not in done]
    summary = ExtractSummary(cached_before=len(images) - len(todo))
    pending: tuple[list[str], list[np.ndarray], list[np.ndarray]] = ([], [], [])

    def flush() -> None:
        if pending[0]:
            cache.write_shard(pending[0], np.concatenate(pending[1]), np.concatenate(pending[2]))
            for part in pending:
                part.clear()

    bar = tqdm(total=len(todo), desc=f"{backbone.name} features", unit="img", disable=not progress, smoothing=0.05)
    try:
        for start in range(0, len(todo), batch_images):
            keys, pixels = [], []
            for key, path in todo[start:start + batch_images]:
                try:
                    pixels.append(decode(path.read_bytes()).pixels)
                    keys.append(key)
                except (UndecodableImage, ImageTooLarge, OSError) as exc:
                    summary.failed.append((path, str(exc)))
            if keys:
                t0 = time.perf_counter()
                out = backbone.features(pixels, tiles, channel_order="bgr")
                summary.backbone_seconds += time.perf_counter() - t0
                pending[0].extend(keys)
                pending[1].append(out.whole.float().cpu().numpy().astype(np.float16))
                pending[2].append(out.tiles.float().cpu().numpy().astype(np.float16))
                summary.computed += len(keys)
                if len(pending[0]) >= shard_size:
                    flush()
            bar.update(min(batch_images, len(todo) - start))
            bar.set_postfix(ms_per_img=f"{summary.ms_per_image:.0f}", failed=len(summary.failed))
    finally:
        flush()
        bar.close()
    return summary


def hash_table(rows: Sequence[LabelledImage], progress: bool = True) -> list[tuple[LabelledImage, str]]:
    return [(row, sha256_of(row.path)) for row in tqdm(rows, desc="sha256", unit="img", disable=not progress)]


def write_keyed_table(keyed: Sequence[tuple[LabelledImage, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("path", "sha256", "source", "group", "labels", "kind"))
        for row, key in keyed:
            writer.writerow((str(row.path), key, row.source, row.group, ";".join(row.labels), row.kind))
    tmp.replace(path)


def read_keyed_table(path: Path) -> list[tuple[LabelledImage, str]]:
    """`table.csv` of a run: each labelled photo with its sha256, the key into every backbone's cache."""
    with open(path, newline="", encoding="utf-8") as f:
        return [(LabelledImage(Path(r["path"]), r["source"], r["group"], tuple(x for x in r["labels"].split(";") if x),
                               r["kind"]), r["sha256"]) for r in csv.DictReader(f)]


def _parse_grids(text: str) -> tuple[int, ...]:
    return tuple(int(g) for g in text.split(",") if g.strip()) if text not in ("", "none") else ()


def _first_per_source(rows: Sequence[LabelledImage], limit: int) -> list[LabelledImage]:
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        seen[row.source] = seen.get(row.source, 0) + 1
        if seen[row.source] <= limit:
            out.append(row)
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.imagelevel.features", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="run folder: table.csv and one cache per backbone")
    parser.add_argument("--shared", type=Path, default=None,
                        help="../shared (default: $WILDSCREEN_SHARED, else ../shared)")
    parser.add_argument("--backbone", nargs="+", default=["lite0"], choices=sorted(BACKBONES),
                        help="one or more, extracted one after the other")
    parser.add_argument("--tiles", default="2,3", help="tile grids per side, comma-separated, or 'none' (default 2,3)")
    parser.add_argument("--overlap", type=float, default=0.25, help="fraction of a tile shared with its neighbour")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: leave cores to others)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-images", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=128, help="images per shard (the most a kill can lose)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images per source (a quick check)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--review-export", type=Path, action="append", default=[], metavar="FOLDER",
                        help="a `wildscreen-review export` folder: its decided items join the table as image-level "
                             "labels (confirmed: their boxes' classes; rejected: negatives); repeatable")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    # SIGTERM (kill, a supervisor) unwinds like Ctrl-C, so the features of the last images are flushed.
    signal.signal(signal.SIGTERM, _interrupt)
    data = shared_data(args.shared)
    rows = image_level_table(data)
    for export in args.review_export:
        rows += review_export_table(export)
    if args.limit is not None:
        rows = _first_per_source(rows, args.limit)
    if not rows:
        print(f"no labelled images under {data}", file=sys.stderr)
        return 2
    keyed = hash_table(rows, progress=not args.no_progress)
    write_keyed_table(keyed, args.out / "table.csv")
    images = {key: row.path for row, key in keyed}
    print(f"{len(rows)} labelled images ({len(images)} distinct) from {data}", flush=True)
    tiles = TileGrid(_parse_grids(args.tiles), args.overlap)
    for name in args.backbone:
        backbone = load_backbone(name, args.device)
        cache = FeatureCache.open(args.out / name, cache_meta(backbone, tiles), lock=True)
        try:
            summary = extract(images, backbone, cache, tiles, args.batch_images, args.shard_size,
                              progress=not args.no_progress)
        except KeyboardInterrupt:
            print(f"{name}: interrupted; what was computed is cached, the same command resumes", flush=True)
            return 130
        finally:
            cache.close()
        with open(args.out / name / "failed.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("path", "error"), *((str(p), e) for p, e in summary.failed)])
        print(f"{name}: {summary.computed} computed, {summary.cached_before} already cached, "
              f"{len(summary.failed)} failed; {summary.ms_per_image:.1f} ms/image in the backbone "
              f"(whole + {tiles.count} tiles, {args.threads} thread(s), {args.device})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
