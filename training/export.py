"""`training export`: the .pt model as ONNX (and a TensorRT engine on a CUDA machine), checked.

An export is only useful if it finds what the .pt finds. After exporting, both run through our
serving engine on sample images and their detections are matched box by box (same class,
IoU >= 0.9, confidence within 0.02). The agreement goes into the manifest at promote time, and the
server only ever picks ONNX Runtime for a model whose export agreed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from server.core.decoding import ImageDecoder
from server.core.detections import Detections
from training.modelfile import candidate_engine, checkpoint_facts

AGREEMENT_FILE = "export.json"
MIN_IOU = 0.9
MAX_CONFIDENCE_DIFFERENCE = 0.02
PROBE_FLOOR = 0.001
"""Both engines run down to here; the comparison then keeps what is above its floor."""


@dataclass(frozen=True)
class Agreement:
    images: int
    reference_detections: int
    matched: int
    min_iou: float
    max_confidence_difference: float
    agrees: bool
    confidence_floor: float


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


def compare_engines(reference, candidate, images: list[Path], floor: float = 0.1, batch: int = 4) -> Agreement:
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
            n, m, iou, diff = match(r.above(floor), c.above(floor), floor)
            total, matched = total + n, matched + m
            min_iou, max_diff = min(min_iou, iou), max(max_diff, diff)
    # No detections compared proves nothing (an untrained model): that is not agreement.
    return Agreement(len(images), total, matched, min_iou, max_diff, total > 0 and matched == total, round(floor, 4))


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


def export(model: Path, sample_images: list[Path], tensorrt: bool = False, imgsz: int | None = None) -> dict:
    """Export to ONNX (at `imgsz`, default the training size), check it against the .pt on
    `sample_images`, write export.json beside it."""
    imgsz = imgsz or checkpoint_facts(model).input_size
    onnx_path = export_onnx(model, imgsz)
    reference = candidate_engine(model, "cpu", input_size=imgsz)
    candidate = candidate_engine(model, "cpu", backend_path=onnx_path, input_size=imgsz)
    agreement = compare_engines(reference, candidate, sample_images)
    record = {"onnx": {"file": str(onnx_path), "input_size": imgsz, "agreement": asdict(agreement)}}
    if tensorrt:
        engine_path = export_tensorrt(model, imgsz)
        record["tensorrt"] = {"file": str(engine_path)} if engine_path else {"skipped": "no CUDA device on this machine"}
    (onnx_path.parent / AGREEMENT_FILE).write_text(json.dumps(record, indent=2))
    return record
