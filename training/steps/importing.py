"""`training import`: bring a labelled export (a format of training/formats.py) or a folder of
negatives into a dataset, as one named source."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.formats import FORMATS, import_source
from training.layout import Dataset
from training.mapping import ClassMapping, MappingError
from server.settings import HelpFormatter


def source_name(src: Path) -> str:
    """A source's default name: its folder (for a COCO json, the folder holding it)."""
    return src.resolve().parent.name if src.is_file() else src.resolve().name


def cmd_import(args: argparse.Namespace) -> int:
    try:
        summary = import_source(
            args.format, args.src, Dataset(args.dataset), args.source or source_name(args.src), ClassMapping.load(args.mapping),
            group=args.group, images_dir=args.images, link=args.link,
        )
    except MappingError as exc:
        print(f"training import: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import a labelled export or a folder of negatives",
                       formatter_class=HelpFormatter)
    p.add_argument("format", choices=list(FORMATS), help="the export's format: " + ", ".join(FORMATS))
    sources = [f.src for f in FORMATS.values()]
    p.add_argument("src", type=Path, help=f"{', '.join(sources[:-1])}, or {sources[-1]}")
    p.add_argument("--dataset", type=Path, required=True, help="our dataset folder (created if missing)")
    p.add_argument("--source", help="name of this source inside the dataset (default: its folder's name)")
    p.add_argument("--mapping", type=Path, help="YAML 'source class: taxonomy label|background'")
    p.add_argument("--images", type=Path, help="COCO: folder of the images (default: images/ beside the json)")
    p.add_argument("--group", default="file", help="file | folder | regex:PATTERN | csv:PATH; a group never straddles splits")
    p.add_argument("--link", action="store_true", help="symlink images instead of copying them")
    p.set_defaults(handler=cmd_import)
