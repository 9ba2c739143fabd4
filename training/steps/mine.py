"""`training mine`: hard negatives. Images known to hold none of our classes, on which a model
still fires, become background images of the training split for the next round.

Typical sources: look-alikes the model has not trained on, listings reviewers cleared.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.formats import import_source
from training.layout import Dataset, image_files_under, link_view
from training.mapping import ClassMapping
from training.modelfile import candidate_engine, detect_in_files
from server.settings import HelpFormatter


def find_false_positives(model: Path, images: list[Path], min_confidence: float, device: str = "auto", batch: int = 8) -> list[tuple[Path, float]]:
    engine = candidate_engine(model, device)
    found_in = detect_in_files(engine, images, min_confidence, batch, desc="mining")
    return [(path, float(found.confidence.max())) for path, _, found in found_in if len(found)]


def mine(model: Path, images: list[Path], root: Path, dataset: Dataset, source: str, min_confidence: float, device: str = "auto") -> list[tuple[Path, float]]:
    """Import the images `model` fires on as background images of `source`, into the train split."""
    hits = find_false_positives(model, images, min_confidence, device)
    if not hits:
        return hits
    staging = link_view([path for path, _ in hits], root, dataset.root / "work" / f"mined-{source}")
    import_source("negatives", staging, dataset, source, ClassMapping(), link=True)
    splits = dataset.read_splits()
    known = {dataset.relative(p) for members in splits.values() for p in members}
    added = [p for p in dataset.images() if dataset.relative(p) not in known and dataset.relative(p).startswith(f"images/{source}/")]
    splits["train"] = splits["train"] + added
    dataset.write_splits(splits)
    return hits


def cmd_mine(args: argparse.Namespace) -> int:
    images = image_files_under(args.images)
    hits = mine(args.model, images, Path(args.images), Dataset(args.dataset), args.source, args.min_confidence, args.device)
    print(f"{len(hits)} of {len(images)} images fired at >= {args.min_confidence}; added to {args.dataset}/train.txt as background "
          f"images of source {args.source!r}. Run `training check {args.dataset}` for leakage before training.")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mine", help="add false positives on known-clean images to the train split as background",
                       formatter_class=HelpFormatter)
    p.add_argument("images", type=Path, help="folder of images that show none of our classes")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--source", required=True, help="source name for the mined images")
    p.add_argument("--min-confidence", type=float, default=0.25)
    p.add_argument("--device", default="auto")
    p.set_defaults(handler=cmd_mine)
