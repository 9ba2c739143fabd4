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

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from server.core.decoding import ImageDecoder
from server.core.detections import Detections
from training.modelfile import candidate_engine, checkpoint_facts
from training.quantize import DEFAULT_KEEP_FLOAT, quantize_int8

AGREEMENT_FILE = "export.json"
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


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (N, 4) and (M, 4) xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


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
    int8_path = quantize_int8(onnx_path, onnx_path.with_suffix(".int8.onnx"), calibration, imgsz, keep_float)
    candidate = candidate_engine(model, "cpu", backend_path=int8_path, input_size=imgsz)
    agreement = asdict(compare_engines(reference, candidate, sample_images, tolerance=INT8))
    if data is not None:
        agreement["ap50"] = ap50_drop(model, int8_path, data, imgsz)
    return {"file": str(int8_path), "input_size": imgsz, "keep_float": keep_float,
            "calibration_images": len(calibration), "agreement": agreement}


def ap50_drop(model: Path, int8_path: Path, data: Path, imgsz: int, split: str = "test") -> dict:
    """AP50 (all classes) of the .pt and of the int8 model on `split`, by Ultralytics' validator."""
    import tempfile

    from training.evaluate import detection_metrics

    with tempfile.TemporaryDirectory() as tmp:
        reference = detection_metrics(model, data, split, imgsz, "cpu", Path(tmp) / "pt")["all"]["ap50"]
        quantized = detection_metrics(int8_path, data, split, imgsz, "cpu", Path(tmp) / "int8")["all"]["ap50"]
    return {"split": split, "reference": reference, "int8": quantized, "drop_points": round(100 * (reference - quantized), 3)}
