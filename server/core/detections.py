"""One result type for detections: arrays of boxes, confidences and class ids, nothing else.

`from_nms` is the only code that reads the model's output rows; everything downstream
(verdicts, overlays, protos, evaluation) works on `Detections`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    xyxy: np.ndarray
    """(N, 4) float32 boxes, x_min, y_min, x_max, y_max, in pixels."""
    confidence: np.ndarray
    """(N,) float32, highest first."""
    class_id: np.ndarray
    """(N,) int64 taxonomy ids."""

    def __post_init__(self) -> None:
        n = len(self.confidence)
        if self.xyxy.shape != (n, 4) or self.class_id.shape != (n,):
            raise ValueError(
                f"inconsistent detections: xyxy {self.xyxy.shape}, confidence {self.confidence.shape}, "
                f"class_id {self.class_id.shape}"
            )

    def __len__(self) -> int:
        return len(self.confidence)

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def from_nms(cls, rows: np.ndarray) -> Detections:
        """Rows of Ultralytics' NMS output: x1, y1, x2, y2, confidence, class; sorted by confidence."""
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
        order = np.argsort(-rows[:, 4], kind="stable")
        rows = rows[order]
        return cls(rows[:, :4].copy(), rows[:, 4].copy(), rows[:, 5].astype(np.int64))

    def of_classes(self, class_ids: frozenset[int] | None) -> Detections:
        """Only the given classes; None keeps all."""
        if class_ids is None:
            return self
        return self[np.isin(self.class_id, list(class_ids))]

    def above(self, min_confidence: float) -> Detections:
        return self[self.confidence >= min_confidence]
