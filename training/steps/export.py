"""`training export`: the .pt model as ONNX, int8 ONNX (and a TensorRT engine on CUDA), checked.

An export is only useful if it finds what the .pt finds. After exporting, both run through our
serving engine on sample images and their detections are matched box by box: FP32 ONNX must find
every one (same class, IoU >= 0.9, confidence within 0.02); int8 is a different computation, so it
must find 90% of them with IoU >= 0.8 and confidence within 0.1 (`INT8`), and, where a labelled
test split is given (--data), lose at most one point of AP50. The agreement goes into the manifest
(at promote time, or --into for a promoted version), and the server only ever picks an export
that agreed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from server.core.decoding import ImageDecoder
from server.core.detections import Detections
from server.core.registry import EXPORT_FORMATS
from training.layout import images_in
from training.metrics import box_iou, detection_metrics
from training.modelfile import candidate_engine, checkpoint_facts
from training.runs import AGREEMENT_FILE
from training.steps.quantize import DEFAULT_KEEP_FLOAT, KEEP_FLOAT, quantize_int8
from server.settings import HelpFormatter

MIN_IOU = 0.9
MAX_CONFIDENCE_DIFFERENCE = 0.02
PROBE_FLOOR = 0.001
"""Both engines run down to here; the comparison then keeps what is above its floor."""


@dataclass(frozen=True)
class Tolerance:
    """What "finds the same detection" means for one kind of export, fixed before measuring."""

    min_iou: float = MIN_IOU
    max_confidence_difference: float = MAX_CONFIDENCE_DIFFERENCE
    min_matched_share: float = 1.0


FP32 = Tolerance()
INT8 = Tolerance(min_iou=0.8, max_confidence_difference=0.1, min_matched_share=0.9)


@dataclass(frozen=True)
class Agreement:
    images: int
    reference_detections: int
    matched: int
    min_iou: float
    max_confidence_difference: float
    agrees: bool
    confidence_floor: float
    required: dict = field(default_factory=lambda: asdict(FP32))
    """The `Tolerance` it was held to (min_iou and max_confidence_difference above are what was seen)."""


def match(
    reference: Detections, candidate: Detections, floor: float,
    min_iou: float = MIN_IOU, max_confidence_difference: float = MAX_CONFIDENCE_DIFFERENCE,
) -> tuple[int, int, float, float]:
    """Greedy one-to-one matching of the reference's detections that are clearly above `floor`
    (a detection right at the floor may fall either side of it and is not counted)."""
    keep = reference.confidence >= floor + max_confidence_difference
    ref = reference[keep]
    used = np.zeros(len(candidate), dtype=bool)
    matched, worst_iou, worst_diff = 0, 1.0, 0.0
    ious = box_iou(ref.xyxy, candidate.xyxy) if len(ref) and len(candidate) else np.zeros((len(ref), len(candidate)))
    for i in range(len(ref)):
        same_class = (candidate.class_id == ref.class_id[i]) & ~used
        if not same_class.any():
            continue
        j = int(np.argmax(np.where(same_class, ious[i], -1)))
        diff = abs(float(candidate.confidence[j] - ref.confidence[i]))
        if ious[i, j] >= min_iou and diff <= max_confidence_difference:
            used[j] = True
            matched += 1
            worst_iou = min(worst_iou, float(ious[i, j]))
            worst_diff = max(worst_diff, diff)
    return len(ref), matched, worst_iou, worst_diff


def compare_engines(
    reference, candidate, images: list[Path], floor: float = 0.1, batch: int = 4, tolerance: Tolerance = FP32,
) -> Agreement:
    """Match the candidate's detections to the reference's on `images`, at `floor`, or at half the
    reference's best confidence when that is lower: the check compares whatever the reference finds,
    however confident the model is (a weakly trained model still gets a real comparison)."""
    decoder = ImageDecoder(reference.input_size, reference.backend.device)
    prepared = []
    for start in range(0, len(images), batch):
        chunk = [p.read_bytes() for p in images[start : start + batch]]
        prepared.append([decoder.prepare(data)[1] for data in chunk])
    outputs = [(reference.run(chunk, PROBE_FLOOR), candidate.run(chunk, PROBE_FLOOR)) for chunk in prepared]
    best = max((float(d.confidence.max()) for refs, _ in outputs for d in refs if len(d)), default=0.0)
    floor = min(floor, best / 2)
    total = matched = 0
    min_iou, max_diff = 1.0, 0.0
    for refs, cands in outputs:
        for r, c in zip(refs, cands):
            n, m, iou, diff = match(r.above(floor), c.above(floor), floor, tolerance.min_iou, tolerance.max_confidence_difference)
            total, matched = total + n, matched + m
            min_iou, max_diff = min(min_iou, iou), max(max_diff, diff)
    # No detections compared proves nothing (an untrained model): that is not agreement.
    agrees = total > 0 and matched >= tolerance.min_matched_share * total
    return Agreement(len(images), total, matched, min_iou, max_diff, agrees, round(floor, 4), asdict(tolerance))


def export_onnx(model: Path, imgsz: int | None = None) -> Path:
    from ultralytics import YOLO

    imgsz = imgsz or checkpoint_facts(model).input_size
    return Path(YOLO(str(model)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, device="cpu"))


def export_tensorrt(model: Path, imgsz: int | None = None) -> Path | None:
    """A TensorRT engine (FP16) when this machine has CUDA; None otherwise."""
    import torch
    from ultralytics import YOLO

    if not torch.cuda.is_available():
        return None
    imgsz = imgsz or checkpoint_facts(model).input_size
    return Path(YOLO(str(model)).export(format="engine", imgsz=imgsz, half=True, dynamic=True, batch=32, device=0))


def export(
    model: Path, sample_images: list[Path], tensorrt: bool = False, imgsz: int | None = None,
    int8_calibration: list[Path] | None = None, data: Path | None = None, keep_float: str = DEFAULT_KEEP_FLOAT,
) -> dict:
    """Export to ONNX (at `imgsz`, default the training size), check it against the .pt on
    `sample_images`, write export.json beside it. With `int8_calibration` images, also the int8
    model (`<name>.int8.onnx`), checked the same way (INT8 tolerance) and, with `data`, on AP50."""
    imgsz = imgsz or checkpoint_facts(model).input_size
    onnx_path = export_onnx(model, imgsz)
    reference = candidate_engine(model, "cpu", input_size=imgsz)
    candidate = candidate_engine(model, "cpu", backend_path=onnx_path, input_size=imgsz)
    agreement = compare_engines(reference, candidate, sample_images)
    record = {"onnx": {"file": str(onnx_path), "input_size": imgsz, "agreement": asdict(agreement)}}
    if int8_calibration:
        record["int8"] = export_int8(model, onnx_path, reference, sample_images, int8_calibration, imgsz, data, keep_float)
    if tensorrt:
        engine_path = export_tensorrt(model, imgsz)
        record["tensorrt"] = {"file": str(engine_path)} if engine_path else {"skipped": "no CUDA device on this machine"}
    (onnx_path.parent / AGREEMENT_FILE).write_text(json.dumps(record, indent=2))
    return record


def export_int8(
    model: Path, onnx_path: Path, reference, sample_images: list[Path], calibration: list[Path], imgsz: int,
    data: Path | None = None, keep_float: str = DEFAULT_KEEP_FLOAT,
) -> dict:
    """Quantize `onnx_path` beside itself and hold it to INT8 against `reference` (the .pt)."""
    int8_path = quantize_int8(onnx_path, onnx_path.with_suffix(EXPORT_FORMATS["int8"].suffix), calibration, imgsz, keep_float)
    candidate = candidate_engine(model, "cpu", backend_path=int8_path, input_size=imgsz)
    agreement = asdict(compare_engines(reference, candidate, sample_images, tolerance=INT8))
    if data is not None:
        agreement["ap50"] = ap50_drop(model, int8_path, data, imgsz)
    return {"file": str(int8_path), "input_size": imgsz, "keep_float": keep_float,
            "calibration_images": len(calibration), "agreement": agreement}


def ap50_drop(model: Path, int8_path: Path, data: Path, imgsz: int, split: str = "test") -> dict:
    """AP50 (all classes) of the .pt and of the int8 model on `split`, by Ultralytics' validator."""
    with tempfile.TemporaryDirectory() as tmp:
        reference = detection_metrics(model, data, split, imgsz, "cpu", Path(tmp) / "pt")["all"]["ap50"]
        quantized = detection_metrics(int8_path, data, split, imgsz, "cpu", Path(tmp) / "int8")["all"]["ap50"]
    return {"split": split, "reference": reference, "int8": quantized, "drop_points": round(100 * (reference - quantized), 3)}


def pick_images(samples: Path, max_samples: int, calibration: Path | None, max_calibration: int) -> tuple[list[Path], list[Path]]:
    """A seeded sample of agreement images and, from `calibration`, of int8 calibration images;
    never the same image in both: the check must not see the images the ranges were set on."""
    found = images_in(samples)
    chosen = sorted(random.Random(0).sample(found, min(len(found), max_samples)))
    if calibration is None:
        return chosen, []
    pool = sorted(set(images_in(calibration)) - set(chosen))
    return chosen, random.Random(0).sample(pool, min(len(pool), max_calibration))


def add_to_store(record: dict, weights: Path, version: str | None) -> list[str]:
    """Add the record's agreed-on exports a promoted version does not have yet; what was added."""
    from server.core.manifest import WeightsStore

    store = WeightsStore(weights)
    version = version or store.current_version()
    added = []
    for kind in EXPORT_FORMATS:
        if kind in record and kind not in store.get(version).exports:
            entry = store.add_export(version, kind, Path(record[kind]["file"]), record[kind]["agreement"])
            added.append(f"added {entry.file} to {version} in {weights}")
    return added


def report_lines(record: dict) -> list[str]:
    """Each export's agreement with the .pt, as `training export` prints it."""
    out = []
    for kind in EXPORT_FORMATS:
        if kind not in record:
            continue
        a = record[kind]["agreement"]
        out.append(f"{kind}: {record[kind]['file']}\n  {a['matched']}/{a['reference_detections']} detections matched on "
                   f"{a['images']} images (min IoU {a['min_iou']:.3f}, max confidence difference {a['max_confidence_difference']:.4f}; "
                   f"required {a['required']}): {'agrees' if a['agrees'] else 'DOES NOT AGREE'}")
        if "ap50" in a:
            out.append(f"  AP50 on {a['ap50']['split']}: .pt {a['ap50']['reference']:.4f}, {kind} {a['ap50']['int8']:.4f}, "
                       f"drop {a['ap50']['drop_points']:.2f} points")
    if "tensorrt" in record:
        out.append(f"tensorrt: {record['tensorrt']}")
    return out


def cmd_export(args: argparse.Namespace) -> int:
    samples, calibration = pick_images(args.samples, args.max_samples, args.calibration if args.int8 else None, args.max_calibration)
    if not samples:
        print(f"training export: no sample images under {args.samples}", file=sys.stderr)
        return 2
    if args.int8 and args.calibration is None:
        print("training export: --int8 needs --calibration (a folder or split list of training-set images)", file=sys.stderr)
        return 2
    if args.int8 and not calibration:
        print(f"training export: no calibration images under {args.calibration}", file=sys.stderr)
        return 2
    model = args.model
    if args.into is not None:  # exports land beside the model: keep them out of the store until added
        model = Path(tempfile.mkdtemp(prefix="export-")) / args.model.name
        shutil.copyfile(args.model, model)
    record = export(model, samples, tensorrt=args.tensorrt, imgsz=args.imgsz, int8_calibration=calibration or None,
                    data=args.data, keep_float=args.keep_float)
    print("\n".join(report_lines(record)))
    if args.into is not None:
        print("\n".join(add_to_store(record, args.into, args.version)))
    return 0 if all(record[kind]["agreement"]["agrees"] for kind in EXPORT_FORMATS if kind in record) else 1


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="ONNX, int8 ONNX and TensorRT (CUDA), checked against the .pt",
                       formatter_class=HelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--samples", type=Path, required=True, help="folder or split list (test.txt) of images for the agreement check")
    p.add_argument("--max-samples", type=int, default=32)
    p.add_argument("--tensorrt", action="store_true", help="also build a TensorRT engine (CUDA machines)")
    p.add_argument("--int8", action="store_true", help="also an int8 ONNX model (static QDQ), calibrated on --calibration")
    p.add_argument("--calibration", type=Path, help="folder or split list (train.txt) of training-set images for the int8 ranges")
    p.add_argument("--max-calibration", type=int, default=200, help="calibration images used at most (a seeded sample)")
    p.add_argument("--keep-float", default=DEFAULT_KEEP_FLOAT, choices=list(KEEP_FLOAT),
                   help="what of the Detect layer stays float in int8 (see training/steps/quantize.py)")
    p.add_argument("--data", type=Path, help="data.yaml with a labelled test split: record the int8 model's AP50 drop")
    p.add_argument("--into", type=Path, help="add the exports to a promoted version in this weights folder")
    p.add_argument("--version", help="with --into: the version (default: the current one)")
    p.add_argument("--imgsz", type=int, help="input size to export at (the size it will be served at); default: the training size")
    p.set_defaults(handler=cmd_export)
