"""`training head-promote`: a new version in weights/ = a promoted detector + a fitted image-level head.

The detector's files are shared, not copied (the new entry names them, with their sha256, as the
detector's own entry does); its thresholds become the ones calibrated together with the head
(`calibration.classes.<label>.detector_review/detector_flag` of the head's entry). The head's npz is
copied in. Nothing is overwritten: a version that exists is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from server.core.errors import ModelError
from server.core.manifest import ModelManifest, WeightsStore, now_iso
from server.core.policy import ClassPolicy
from server.settings import HelpFormatter


def promote_with_head(weights: Path, detector: str | None, head_entry: dict[str, Any], head_file: Path, version: str,
                      card: str | None = None, notes: str = "", limitations: dict[str, str] | None = None,
                      make_current: bool = True) -> ModelManifest:
    store = WeightsStore(weights)
    base = store.get(detector)
    calibrated = head_entry.get("calibration", {}).get("classes", {})
    classes = []
    for c in base.classes:
        fused = calibrated.get(c.label, {})
        review = fused.get("detector_review", c.review_threshold)
        flag = fused.get("detector_flag", c.flag_threshold) if "detector_review" in fused else c.flag_threshold
        classes.append(ClassPolicy(c.id, c.label, float(review), None if flag is None else max(float(flag), float(review))))
    head = dict(head_entry, file=f"{version}.head.npz")
    manifest = dataclasses.replace(
        base, version=version, classes=tuple(classes), created=now_iso(), parent=f"{base.version} (detector) + image-level head",
        card=card, notes=notes or base.notes, head=head,
        limitations=dict(limitations if limitations is not None else base.limitations),
    )
    store.add(manifest, {head_file: head["file"]}, make_current=make_current)
    return manifest


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("head-promote", help="a new version in weights/: a promoted detector plus a fitted head",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("head", type=Path, help="a candidate's folder from head-fit or head-evaluate (<version>.head.json and .npz)")
    p.add_argument("--weights", type=Path, default=Path("weights"))
    p.add_argument("--detector", help="the detector's version (default: the current one)")
    p.add_argument("--version", required=True, help="the new version, e.g. v3")
    p.add_argument("--card", help="its model card, a file name in --weights (e.g. v3.md)")
    p.add_argument("--notes", default="", help="free text for the manifest")
    p.add_argument("--limitations", type=Path, help="JSON {class label: what this version misses}, shown on CLEAR overlays")
    p.add_argument("--no-current", action="store_true", help="add the version without making it current")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    entries = sorted(args.head.glob("*.head.json"))
    if len(entries) != 1:
        print(f"head-promote: {args.head} must hold one <version>.head.json (found {len(entries)})", file=sys.stderr)
        return 2
    entry = json.loads(entries[0].read_text())
    limitations = json.loads(args.limitations.read_text()) if args.limitations else None
    try:
        manifest = promote_with_head(args.weights, args.detector, entry, args.head / entry["file"], args.version,
                                     args.card, args.notes, limitations, not args.no_current)
    except (ModelError, OSError, KeyError, ValueError) as exc:
        print(f"head-promote: {exc}", file=sys.stderr)
        return 2
    print(f"promoted {manifest.version}: detector {manifest.file} + head {manifest.head['file']} "
          f"({manifest.head['backbone']}, {manifest.head['features']}) into {args.weights}")
    return 0
