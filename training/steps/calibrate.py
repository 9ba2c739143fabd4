"""Per-class threshold calibration from image-level scores.

For each class, an image's score is the highest confidence of that class's detections in it (0 when
there is none), the way the server's verdict sees it. Positives are the images that contain the
class.

- review threshold: the highest confidence at which recall still reaches the target (default 0.90):
  as few reviews as possible while missing at most 10% of the class; but never so low that more
  than `review_budget` (default 5%) of the images without the class go to review for it: where
  the two conflict, the budget wins and the note says what recall it leaves;
- when the target is out of reach, the threshold does not slide down to the floor for the last
  few points of recall (v1's tiger threshold fell to 0.010: anything faintly striped went to
  review): it is the highest one within `recall_slack` of the best recall the budget allows, and
  never below `min_review` (0.05), since the lowest review threshold is also what the server
  lists boxes down to;
- flag threshold: the lowest confidence at which precision reaches the target (default 0.90), with at
  least `min_flag_support` true positives above it. If no confidence gets there, the class never
  flags: REVIEW is its strongest verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.core.policy import reaches

FALLBACK_REVIEW_THRESHOLD = 0.25
MIN_POSITIVES = 5
MIN_REVIEW_THRESHOLD = 0.05
RECALL_SLACK = 0.05


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    precision: float
    recall: float
    predicted: int
    true_positives: int
    false_positive_rate: float = 0.0
    """Share of the images without the class scored at or above the threshold."""


@dataclass(frozen=True)
class Calibration:
    review: OperatingPoint
    flag: OperatingPoint | None
    positives: int
    note: str = ""

    @property
    def review_threshold(self) -> float:
        return self.review.threshold

    @property
    def flag_threshold(self) -> float | None:
        return None if self.flag is None else self.flag.threshold


def operating_point(scores: np.ndarray, positives: np.ndarray, threshold: float) -> OperatingPoint:
    predicted = reaches(scores, threshold)
    tp = int(np.sum(predicted & positives))
    n_pred = int(np.sum(predicted))
    n_pos = int(np.sum(positives))
    n_neg = len(positives) - n_pos
    return OperatingPoint(
        threshold=float(threshold),
        precision=tp / n_pred if n_pred else 1.0,
        recall=tp / n_pos if n_pos else 0.0,
        predicted=n_pred,
        true_positives=tp,
        false_positive_rate=(n_pred - tp) / n_neg if n_neg else 0.0,
    )


def calibrate_class(
    scores: np.ndarray,
    positives: np.ndarray,
    target_precision: float = 0.90,
    target_recall: float = 0.90,
    floor: float = MIN_REVIEW_THRESHOLD,
    min_flag_support: int = 5,
    review_budget: float | None = 0.05,
    recall_slack: float = RECALL_SLACK,
) -> Calibration:
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    if n_pos < MIN_POSITIVES:
        review = operating_point(scores, positives, FALLBACK_REVIEW_THRESHOLD)
        return Calibration(review, None, n_pos, f"only {n_pos} positive images: not calibrated, never flags")
    candidates = np.unique(np.concatenate([scores[scores >= floor], [floor]]))[::-1]  # high to low
    points = [operating_point(scores, positives, t) for t in candidates]
    affordable = [p for p in points if review_budget is None or p.false_positive_rate <= review_budget] or points[:1]
    reaching = [p for p in affordable if p.recall >= target_recall]
    note = ""
    if reaching:
        review = reaching[0]  # the highest threshold that reaches the target recall
    else:
        best_affordable = max(p.recall for p in affordable)
        review = max((p for p in affordable if p.recall >= best_affordable - recall_slack), key=lambda p: p.threshold)
        best = max(points, key=lambda p: (p.recall, p.threshold))
        why = f"within the review budget ({review_budget:.0%} of other images)" if best.recall >= target_recall else "at any threshold"
        note = (f"target recall {target_recall:.2f} not reached {why}: recall {review.recall:.2f} "
                f"at {review.threshold:.3f}; ")
    precise = [p for p in points if p.precision >= target_precision and p.true_positives >= min_flag_support]
    flag = min(precise, key=lambda p: p.threshold) if precise else None
    if flag is None:
        note += f"precision {target_precision:.2f} not reached with {min_flag_support}+ true positives: never flags"
    elif flag.threshold < review.threshold:
        flag = review  # a flag must never be easier to reach than a review
    return Calibration(review, flag, n_pos, note.strip().rstrip(";"))
