"""From detections to a verdict: CLEAR, REVIEW or FLAG, by per-class thresholds of the manifest.

A false flag costs a reviewer's minute; a miss lets a seller through. So each class has two
thresholds calibrated on held-out data: `review_threshold` (reached at the target recall) and
`flag_threshold` (reached at the target precision). A class whose data cannot support a flag has
no flag threshold: REVIEW is the strongest verdict it can give.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
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


def reaches(confidence: np.ndarray | float, threshold: float) -> np.ndarray:
    """The one comparison behind every verdict and every calibrated rate: a confidence at or
    above a threshold counts."""
    return np.asarray(confidence) >= threshold


def verdicts_for(
    policies: Mapping[int, ClassPolicy] | Iterable[ClassPolicy], class_ids: np.ndarray, confidences: np.ndarray
) -> np.ndarray:
    """The verdict (as `Verdict` numbers) that each (class id, confidence) pair calls for on its
    own, vectorised over arrays of any one shape. A class without a policy is always CLEAR. The
    server, `training evaluate` and the benchmark all decide with this function."""
    listed = list(policies.values()) if isinstance(policies, Mapping) else list(policies)
    class_ids = np.asarray(class_ids, dtype=np.int64)
    confidences = np.asarray(confidences, dtype=np.float64)
    size = max([p.id for p in listed] + [int(class_ids.max()) if class_ids.size else -1]) + 1
    review, flag = np.full(size, np.inf), np.full(size, np.inf)
    for p in listed:
        review[p.id] = p.review_threshold
        flag[p.id] = np.inf if p.flag_threshold is None else p.flag_threshold
    out = np.full(confidences.shape, int(Verdict.CLEAR), dtype=np.int64)
    out[reaches(confidences, review[class_ids])] = int(Verdict.REVIEW)
    out[reaches(confidences, flag[class_ids])] = int(Verdict.FLAG)
    return out


def image_verdicts(scores: np.ndarray, policies: Iterable[ClassPolicy]) -> np.ndarray:
    """Verdicts of N images from their (N, classes) scores (per class, the highest confidence,
    0 where none): the strongest of the classes' verdicts, as the server decides one image."""
    scores = np.asarray(scores)
    class_ids = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return verdicts_for(policies, class_ids, scores).max(axis=1, initial=int(Verdict.CLEAR))


def decide(verdicts: Iterable[int]) -> Verdict:
    """The image's verdict: the strongest of its detections', CLEAR when there are none."""
    return Verdict(max((int(v) for v in verdicts), default=Verdict.CLEAR))
