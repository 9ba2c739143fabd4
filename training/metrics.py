"""Box and detection metrics the steps share: IoU between boxes, and Ultralytics' validator on a split.

`export` matches an export's boxes to the .pt's and measures an int8 model's AP50 drop,
`autolabel` merges proposals, `evaluate` reports per-class AP: one definition of each here.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from server.core.taxonomy import LABELS


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (N, 4) and (M, 4) xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def detection_metrics(model: Path, data: Path, split: str, imgsz: int, device: str, out: Path) -> dict[str, Any]:
    """Ultralytics' validator on `split`: per-class P, R, AP50, AP50-95 and its plots under out/."""
    from ultralytics import YOLO

    result = YOLO(str(model)).val(
        data=str(data), split=split, imgsz=imgsz, batch=8, device=device, project=str(out.resolve()),
        name=f"val_{split}", exist_ok=True, plots=True, verbose=False, conf=0.001,
    )
    box = result.box
    metrics: dict[str, Any] = {}
    per_class_instances = getattr(result, "nt_per_class", None)
    for i, class_index in enumerate(box.ap_class_index):
        label = LABELS[int(class_index)]
        metrics[label] = {
            "precision": float(box.p[i]),
            "recall": float(box.r[i]),
            "ap50": float(box.ap50[i]),
            "ap50_95": float(box.ap[i]),
            "instances": int(per_class_instances[int(class_index)]) if per_class_instances is not None else None,
        }
    metrics["all"] = {"precision": float(box.mp), "recall": float(box.mr), "ap50": float(box.map50), "ap50_95": float(box.map)}
    plots = out / f"val_{split}"
    for name in ("confusion_matrix_normalized.png", "BoxPR_curve.png"):
        if (plots / name).exists():
            shutil.copyfile(plots / name, out / name)
    return metrics
