"""From detections to a verdict: CLEAR, REVIEW or FLAG, by per-class thresholds of the manifest.

A false flag costs a reviewer's minute; a miss lets a seller through. So each class has two
thresholds calibrated on held-out data: `review_threshold` (reached at the target recall) and
`flag_threshold` (reached at the target precision). A class whose data cannot support a flag has
no flag threshold: REVIEW is the strongest verdict it can give.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


class Verdict(enum.IntEnum):
    """Same numbers as `wildscreen.v1.Verdict`; ordered so that max() is the strongest."""

    UNSPECIFIED = 0
    CLEAR = 1
    REVIEW = 2
    FLAG = 3


@dataclass(frozen=True)
class ClassPolicy:
    id: int
    label: str
    review_threshold: float
    flag_threshold: float | None

    def __post_init__(self) -> None:
        if not 0.0 < self.review_threshold <= 1.0:
            raise ValueError(f"{self.label}: review_threshold {self.review_threshold} is not in (0, 1]")
        if self.flag_threshold is not None and not self.review_threshold <= self.flag_threshold <= 1.0:
            raise ValueError(
                f"{self.label}: flag_threshold {self.flag_threshold} must lie in [review_threshold, 1]"
            )

    def verdict_for(self, confidence: float) -> Verdict:
        if self.flag_threshold is not None and confidence >= self.flag_threshold:
            return Verdict.FLAG
        if confidence >= self.review_threshold:
            return Verdict.REVIEW
        return Verdict.CLEAR


def verdicts_for(policies: dict[int, ClassPolicy], class_ids: np.ndarray, confidences: np.ndarray) -> list[Verdict]:
    """The verdict each detection calls for on its own."""
    return [policies[int(c)].verdict_for(float(s)) for c, s in zip(class_ids, confidences)]


def decide(verdicts: Iterable[Verdict]) -> Verdict:
    """The image's verdict: the strongest of its detections', CLEAR when there are none."""
    return max(verdicts, default=Verdict.CLEAR)
