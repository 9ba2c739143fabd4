"""`python -m training` / `wildscreen-train`: from labelled folders to served weights.

    import         bring a YOLO / COCO / VOC export or a folder of negatives into a dataset
    check          find broken images and labels, duplicates and train/test leakage (--fix quarantines)
    split          group-aware, class-stratified train/val/test split
    train          fine-tune from a local checkpoint or train from a yaml (CPU or CUDA)
    evaluate       detection and image-level metrics, calibrated thresholds, model card
    export         ONNX, int8 ONNX (--int8) and TensorRT (on CUDA), checked against the .pt
    promote        copy a run into weights/ as a new version; the server serves the current one
    placeholder    an untrained model of the real architecture, for a service with no training yet
    compare        one table of several evaluated runs, scored on the held-out sources
    mine           false positives on known-clean images become background images of the train split
    autolabel      propose boxes for images labelled per image (folders of one class)
    composite      paste cut-outs onto real backgrounds, boxes from the paste (train split only)
    build-default  build the default dataset from ../shared
    head-detector  a promoted detector's per-class scores on the image-level head's photos, cached
    head-fit       fit, calibrate (with the detector) and write the image-level head of one variant
    head-evaluate  detector alone, head alone and both, per class and held-out source; candidate heads
    head-promote   a new version in weights/: a promoted detector plus a fitted image-level head
    embedding-fit  known-image matching's embedding signal: a projection of the head's features, a threshold

Each prints a summary at the end and exits non-zero on failure. See README "Retraining".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from server.offline import stay_offline
from training.imagelevel import detector as head_detector
from training.imagelevel import embedding_fit
from training.imagelevel import evaluate as head_evaluate
from training.imagelevel import fit as head_fit
from training.imagelevel import promote as head_promote
from training.labelling import autolabel, composite
from training.recipes import build_default
from training.steps import check, compare, evaluate, export, importing, mine, promote, split, train

COMMANDS = (importing, check, split, train, evaluate, export, promote, compare, mine, autolabel, composite, build_default,
            head_detector, head_fit, head_evaluate, head_promote, embedding_fit)
"""The modules that register commands, in --help's order: each has `add_command(subparsers)`,
which adds its subcommand(s) and sets `handler`, a function of the parsed arguments that returns
the exit status."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wildscreen-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    stay_offline()  # before any step imports Ultralytics
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
