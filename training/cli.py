"""`python -m training` / `wildscreen-train`: from labelled folders to served weights.

    import     bring a YOLO / COCO / VOC export or a folder of negatives into a dataset
    check      find broken images and labels, duplicates and train/test leakage (--fix quarantines)
    split      group-aware, class-stratified train/val/test split
    train      fine-tune from a local checkpoint or train from a yaml (CPU or CUDA)
    evaluate   detection and image-level metrics, calibrated thresholds, model card
    export     ONNX, int8 ONNX (--int8) and TensorRT (on CUDA), checked against the .pt
    promote    copy a run into weights/ as a new version; the server serves the current one
    placeholder  an untrained model of the real architecture, for a service with no training yet
    autolabel  propose boxes for images labelled per image (folders of one class)
    mine       false positives on known-clean images become background images of the train split
    build-default  build the default dataset from ../shared

Each prints a summary at the end and exits non-zero on failure. See README "Retraining".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"training: expected key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = _parse_value(value)
    return out


def _source_name(src: Path) -> str:
    """A source's default name: its folder (for a COCO json, the folder holding it)."""
    return src.resolve().parent.name if src.is_file() else src.resolve().name


def cmd_import(args: argparse.Namespace) -> int:
    from training.importers import import_source
    from training.layout import Dataset
    from training.mapping import ClassMapping, MappingError

    try:
        summary = import_source(
            args.format, args.src, Dataset(args.dataset), args.source or _source_name(args.src), ClassMapping.load(args.mapping),
            group=args.group, images_dir=args.images, link=args.link,
        )
    except MappingError as exc:
        print(f"training import: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from training.check import check_dataset, fix
    from training.layout import Dataset

    dataset = Dataset(args.dataset)
    report = check_dataset(dataset, args.max_distance)
    for f in report.findings[: args.show] if args.show else report.findings:
        related = f" (with {', '.join(f.related)})" if f.related else ""
        print(f"{f.severity.upper():7} {f.kind:17} {f.path}: {f.message}{related}")
    print(f"\nchecked {report.images} images, {report.labels} label files")
    for key, n in report.counts().items():
        print(f"  {key}: {n}")
    if args.json:
        Path(args.json).write_text(json.dumps([f.__dict__ for f in report.findings], indent=2))
    if args.fix:
        moved = fix(dataset, report)
        print(f"moved {len(moved)} files to {dataset.root / 'quarantine'}")
        return 0
    return 1 if report.errors else 0


def cmd_split(args: argparse.Namespace) -> int:
    from training.layout import Dataset
    from training.split import split_dataset

    summary = split_dataset(
        Dataset(args.dataset), tuple(args.fractions), args.seed, args.max_distance, tuple(args.holdout_source or ()),
        tuple(args.calibration_source or ()), tuple(args.train_only_source or ()),
    )
    print("\n".join(summary.lines()))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.train import TrainOptions, train

    options = TrainOptions(
        data=args.data, model=args.model, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device=args.device,
        workers=args.workers, freeze=args.freeze, patience=args.patience, project=args.project, name=args.name,
        resume=args.resume, seed=args.seed, overrides=_overrides(args.overrides),
    )
    run_dir = train(options)
    print(f"run: {run_dir}\nbest weights: {run_dir / 'weights' / 'best.pt'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import EvaluationOptions, evaluate

    out = args.out or Path(args.model).resolve().parent.parent / "evaluation"
    result = evaluate(EvaluationOptions(
        model=args.model, data=args.data, out=out, split=args.split, calibration_split=args.calibration_split,
        target_precision=args.target_precision, target_recall=args.target_recall, device=args.device,
        card_notes=args.card_notes, imgsz=args.imgsz, review_budget=args.review_budget or None,
        reports=args.reports or Path("reports") / out.resolve().parent.name / out.name,
        holdout_sources=tuple(args.holdout_source or ()),
    ))
    print(f"{'class':<16} {'AP50':>6} {'AP50-95':>8} {'review':>7} {'flag':>6}  test P/R at review")
    for label, t in result["thresholds"].items():
        d = result["metrics"]["detection"].get(label, {})
        r = t[args.split]["review"]
        flag = "never" if t["flag_threshold"] is None else f"{t['flag_threshold']:.3f}"
        print(f"{label:<16} {d.get('ap50', float('nan')):>6.3f} {d.get('ap50_95', float('nan')):>8.3f} "
              f"{t['review_threshold']:>7.3f} {flag:>6}  {r['precision']:.2f}/{r['recall']:.2f}")
    from training.evaluate import source_table

    for name, level in result["metrics"]["image_level"].items():
        clean = level["clean"]
        print(f"\n{name}: clean images {clean['images']}, flagged {clean['flag_rate']:.1%}, reviewed {clean['review_rate']:.1%}")
        print(f"{'class':<16} {'images':>6} {'review/flag':>11} {'flagged':>8} {'class found':>11}")
        for label, e in level["per_class"].items():
            if e["images"]:
                print(f"{label:<16} {e['images']:>6} {e['verdict_review_or_flag']:>11.1%} {e['verdict_flag']:>8.1%} {e['class_recall_at_review']:>11.1%}")
        print("\n".join(source_table(level)))
    print(f"wrote {out / 'metrics.json'} and {out / 'model_card.md'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import random

    from training.export import export
    from training.layout import images_in

    samples = images_in(args.samples)
    samples = sorted(random.Random(0).sample(samples, min(len(samples), args.max_samples)))
    if not samples:
        print(f"training export: no sample images under {args.samples}", file=sys.stderr)
        return 2
    calibration = None
    if args.int8:
        if args.calibration is None:
            print("training export: --int8 needs --calibration (a folder or split list of training-set images)", file=sys.stderr)
            return 2
        # Not the agreement samples: the check must not see the images the ranges were set on.
        pool = sorted(set(images_in(args.calibration)) - set(samples))
        calibration = random.Random(0).sample(pool, min(len(pool), args.max_calibration))
        if not calibration:
            print(f"training export: no calibration images under {args.calibration}", file=sys.stderr)
            return 2
    model = args.model
    if args.into is not None:  # exports land beside the model: keep them out of the store until added
        import shutil
        import tempfile

        model = Path(tempfile.mkdtemp(prefix="export-")) / args.model.name
        shutil.copyfile(args.model, model)
    record = export(model, samples, tensorrt=args.tensorrt, imgsz=args.imgsz, int8_calibration=calibration,
                    data=args.data, keep_float=args.keep_float)
    ok = True
    for kind in ("onnx", "int8"):
        if kind not in record:
            continue
        a = record[kind]["agreement"]
        print(f"{kind}: {record[kind]['file']}\n  {a['matched']}/{a['reference_detections']} detections matched on "
              f"{a['images']} images (min IoU {a['min_iou']:.3f}, max confidence difference {a['max_confidence_difference']:.4f}; "
              f"required {a['required']}): {'agrees' if a['agrees'] else 'DOES NOT AGREE'}")
        if "ap50" in a:
            print(f"  AP50 on {a['ap50']['split']}: .pt {a['ap50']['reference']:.4f}, {kind} {a['ap50']['int8']:.4f}, "
                  f"drop {a['ap50']['drop_points']:.2f} points")
        ok = ok and a["agrees"]
    if "tensorrt" in record:
        print(f"tensorrt: {record['tensorrt']}")
    if args.into is not None:
        from server.core.manifest import WeightsStore

        store = WeightsStore(args.into)
        version = args.version or store.current_version()
        for kind in ("onnx", "int8"):
            if kind in record and kind not in store.get(version).exports:
                added = store.add_export(version, kind, Path(record[kind]["file"]), record[kind]["agreement"])
                print(f"added {added.file} to {version} in {args.into}")
    return 0 if ok else 1


def cmd_promote(args: argparse.Namespace) -> int:
    from training.export import AGREEMENT_FILE
    from training.promote import load_evaluation, promote
    from training.train import read_run_record

    run = Path(args.run)
    model = args.model or run / "weights" / "best.pt"
    evaluation_dir = args.evaluation or run / "evaluation"
    evaluation = load_evaluation(evaluation_dir / "metrics.json") if (evaluation_dir / "metrics.json").exists() else None
    if evaluation is None and not args.uncalibrated:
        print(f"training promote: {evaluation_dir / 'metrics.json'} is missing; run `training evaluate` first "
              "(or --uncalibrated for a model without calibrated thresholds)", file=sys.stderr)
        return 2
    onnx, agreement = None, None
    export_record = run / "weights" / AGREEMENT_FILE
    int8, int8_agreement = None, None
    if export_record.exists():
        exported = json.loads(export_record.read_text())
        onnx, agreement = Path(exported["onnx"]["file"]), exported["onnx"]["agreement"]
        if "int8" in exported:
            int8, int8_agreement = Path(exported["int8"]["file"]), exported["int8"]["agreement"]
    run_record = read_run_record(run)
    base = run_record.get("base", {})
    manifest = promote(
        model, args.weights, version=args.version, name=args.name, evaluation=evaluation,
        card=evaluation_dir / "model_card.md" if (evaluation_dir / "model_card.md").exists() else None,
        onnx=onnx, onnx_agreement=agreement, int8=int8, int8_agreement=int8_agreement, data=(evaluation or {}).get("data", run_record.get("data", {})),
        training=run_record, parent=f"{base.get('model')} sha256:{base.get('sha256')}" if base else None,
        notes=args.notes or "", make_current=not args.no_current,
    )
    print(f"promoted {model} as {manifest.version} into {args.weights} (sha256 {manifest.sha256[:12]}...)"
          + ("" if args.no_current else "; it is now current"))
    return 0


def cmd_placeholder(args: argparse.Namespace) -> int:
    from training.modelfile import build_untrained
    from training.promote import promote

    model = build_untrained(args.out, args.architecture, args.imgsz)
    manifest = promote(model, args.weights, version=args.version, trained=False, card=args.card,
                       notes="UNTRAINED placeholder: random weights, its detections mean nothing. Train and promote a model.")
    print(f"placeholder {manifest.version} ({args.architecture}, {args.imgsz} px, untrained) written to {args.weights}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wildscreen-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("import", help="import a labelled export or a folder of negatives", formatter_class=defaults)
    p.add_argument("format", choices=["yolo", "coco", "voc", "negatives"])
    p.add_argument("src", type=Path, help="YOLO folder, COCO json, VOC folder, or folder of negatives")
    p.add_argument("--dataset", type=Path, required=True, help="our dataset folder (created if missing)")
    p.add_argument("--source", help="name of this source inside the dataset (default: its folder's name)")
    p.add_argument("--mapping", type=Path, help="YAML 'source class: taxonomy label|background'")
    p.add_argument("--images", type=Path, help="COCO: folder of the images (default: images/ beside the json)")
    p.add_argument("--group", default="file", help="file | folder | regex:PATTERN | csv:PATH; a group never straddles splits")
    p.add_argument("--link", action="store_true", help="symlink images instead of copying them")
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser("check", help="find broken images and labels, duplicates and leakage", formatter_class=defaults)
    p.add_argument("dataset", type=Path)
    p.add_argument("--fix", action="store_true", help="move offending files to quarantine/ (never deletes)")
    p.add_argument("--max-distance", type=int, default=6, help="pHash Hamming distance for near duplicates")
    p.add_argument("--json", type=Path, help="also write the findings as JSON")
    p.add_argument("--show", type=int, default=0, help="print only the first N findings (0 = all)")
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("split", help="group-aware, stratified train/val/test split", formatter_class=defaults)
    p.add_argument("dataset", type=Path)
    p.add_argument("--fractions", type=float, nargs=3, default=[0.7, 0.15, 0.15], metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-distance", type=int, default=6)
    p.add_argument("--holdout-source", action="append", help="keep this whole source out of train/val/test, in holdout (repeatable)")
    p.add_argument("--calibration-source", action="append",
                   help="keep this whole source out of train/val/test, in calibration: thresholds are set on it (repeatable)")
    p.add_argument("--train-only-source", action="append", help="put this source (e.g. composites) only into train (repeatable)")
    p.set_defaults(handler=cmd_split)

    p = sub.add_parser("train", help="train or fine-tune (key=value passes more Ultralytics arguments)", formatter_class=defaults)
    p.add_argument("--data", type=Path, required=True, help="the dataset's data.yaml")
    p.add_argument("--model", default="yolov5n.yaml", help="local .pt to fine-tune (e.g. weights/v1.pt) or a yaml")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--imgsz", type=int, default=416)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="auto", help="auto, cpu, 0, 0,1")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--freeze", type=int, default=None, help="freeze the first N layers")
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--project", type=Path, default=Path("runs"))
    p.add_argument("--name", default="train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="resume runs/<name>/weights/last.pt")
    p.add_argument("overrides", nargs="*", help="Ultralytics arguments, e.g. mosaic=0.5 lr0=0.005")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("evaluate", help="metrics, calibrated thresholds and a model card", formatter_class=defaults)
    p.add_argument("--model", type=Path, required=True, help="e.g. runs/train/weights/best.pt")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, help="default: <run>/evaluation")
    p.add_argument("--split", default="test")
    p.add_argument("--calibration-split", default="val", help="split(s) to set thresholds on, comma-separated (e.g. val,calibration)")
    p.add_argument("--holdout-source", action="append",
                   help="score this source's images as held out (out of calibration and test; refused if it is in train; repeatable)")
    p.add_argument("--target-precision", type=float, default=0.90)
    p.add_argument("--target-recall", type=float, default=0.90)
    p.add_argument("--review-budget", type=float, default=0.05,
                   help="most of the images without a class that its review threshold may send to review (0 = no limit)")
    p.add_argument("--device", default="auto")
    p.add_argument("--card-notes", type=Path, help="markdown placed first in the card: data and limitations")
    p.add_argument("--reports", type=Path, help="contact sheets of hits, misses and false reviews on the test split "
                   "(default reports/<run>/<out>; ignored by git: they show the data's photos)")
    p.add_argument("--imgsz", type=int, help="evaluate (and later serve) at this input size; default: the training size")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("export", help="ONNX, int8 ONNX and TensorRT (CUDA), checked against the .pt", formatter_class=defaults)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--samples", type=Path, required=True, help="folder or split list (test.txt) of images for the agreement check")
    p.add_argument("--max-samples", type=int, default=32)
    p.add_argument("--tensorrt", action="store_true", help="also build a TensorRT engine (CUDA machines)")
    p.add_argument("--int8", action="store_true", help="also an int8 ONNX model (static QDQ), calibrated on --calibration")
    p.add_argument("--calibration", type=Path, help="folder or split list (train.txt) of training-set images for the int8 ranges")
    p.add_argument("--max-calibration", type=int, default=200, help="calibration images used at most (a seeded sample)")
    p.add_argument("--keep-float", default="decode", choices=["none", "decode", "head"],
                   help="what of the Detect layer stays float in int8 (see training/quantize.py)")
    p.add_argument("--data", type=Path, help="data.yaml with a labelled test split: record the int8 model's AP50 drop")
    p.add_argument("--into", type=Path, help="add the exports to a promoted version in this weights folder")
    p.add_argument("--version", help="with --into: the version (default: the current one)")
    p.add_argument("--imgsz", type=int, help="input size to export at (the size it will be served at); default: the training size")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("promote", help="copy a run into weights/ as a new version", formatter_class=defaults)
    p.add_argument("run", type=Path, help="the run folder (runs/<name>)")
    p.add_argument("--weights", type=Path, default=Path("weights"))
    p.add_argument("--model", type=Path, help="default: <run>/weights/best.pt")
    p.add_argument("--evaluation", type=Path, help="default: <run>/evaluation (the folder with metrics.json and the card)")
    p.add_argument("--version", help="default: the next vN")
    p.add_argument("--name", default="wildscreen")
    p.add_argument("--notes", help="free text for the manifest")
    p.add_argument("--no-current", action="store_true", help="add the version without making it current")
    p.add_argument("--uncalibrated", action="store_true", help="allow promoting without an evaluation")
    p.set_defaults(handler=cmd_promote)

    p = sub.add_parser("placeholder", help="write an untrained model into weights/", formatter_class=defaults)
    p.add_argument("--weights", type=Path, default=Path("weights"))
    p.add_argument("--out", type=Path, default=Path("runs/placeholder/untrained.pt"))
    p.add_argument("--architecture", default="yolov5n.yaml")
    p.add_argument("--imgsz", type=int, default=416)
    p.add_argument("--version", default="v0")
    p.add_argument("--card", type=Path, help="markdown model card to ship with it")
    p.set_defaults(handler=cmd_placeholder)

    from training import autolabel, build_default, compare, composite, mine

    autolabel.add_parser(sub)
    composite.add_parser(sub)
    mine.add_parser(sub)
    compare.add_parser(sub)
    build_default.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
