"""Thresholds for the head and the detector, set together on the calibration role against one budget.

**The budget** is a share of the calibration photos *without* a class that may be sent to review
*for that class*, by the detector and the head together (default 1.5%). One number for every class,
because a reviewer's time is spent per photo whatever the class; per class rather than per photo,
because a class whose look-alikes are common (reptiles: amphibians, other animals) must not spend
the budget of the others. Four classes overlap only in part: at 1.5% v3 (Lite0 or Lite2, with or
without 2x2 tiles) sends about 6% of *all* clean calibration photos to review, the issue's target
for product photos (measured on the calibration role, 2026-12-06: 1% -> 3.9-4.2%, 1.5% -> 6.2-6.3%,
2% -> 8.0-8.4%). Raising it buys reptile recall at the price of other animals.

Per class, the detector's review threshold is chosen from a few candidates (its served threshold,
thresholds spending a quarter to all of the budget alone, never) and the head's is then the
lowest that keeps detector OR head within the budget; the pair that finds the most calibration
positives wins (ties: the served detector threshold). With fewer than `MIN_POSITIVES` calibration
positives of a class, recall cannot rank the candidates and the served detector threshold is kept
when it fits the budget.

**Flags**: the detector keeps its served flag thresholds (set for precision by `training
evaluate`). The head flags a class alone only where its calibration precision reaches 0.9 at some
threshold with at least `MIN_FLAG_POSITIVES` true positives above it *and* at most an eighth of
the budget of clean photos flagged (precision alone depends on how many positives calibration
happens to hold: with half its photos ivory, 0.9 is easy); otherwise it never flags that class:
REVIEW is the strongest verdict the head gives it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_BUDGET = 0.015
FLAG_PRECISION = 0.9
MIN_FLAG_POSITIVES = 10
MIN_POSITIVES = 10
FLAG_SHARE_OF_BUDGET = 0.125
"""A head flag may fall on at most this share of the review budget's clean photos (about 0.2% at 1.5%)."""


@dataclass(frozen=True)
class ClassCalibration:
    label: str
    head_review: float
    head_flag: float | None
    detector_review: float
    detector_flag: float | None
    false_review_share: float
    """Calibration photos without the class sent to review for it, detector OR head."""
    recall: float | None
    """Calibration photos with the class reaching review, detector OR head (None without positives)."""
    positives: int
    negatives: int
    flag_precision: float | None
    """The head's calibration precision at its flag threshold."""
    flag_recall: float | None

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}


def review_threshold(negative_scores: np.ndarray, budget: float) -> float:
    """The lowest threshold sending at most `budget` of these scores to review (score >= threshold)."""
    s = np.sort(np.asarray(negative_scores))[::-1]  # in the scores' own dtype: a float32 score compares in float32
    allowed = int(np.floor(budget * len(s) + 1e-9))
    if len(s) == 0:
        return 0.5
    if allowed >= len(s):
        return float(s[-1])
    return float(np.nextafter(s[allowed], np.array(np.inf, s.dtype)))


def flag_threshold(scores: np.ndarray, positive: np.ndarray, floor: float, precision: float = FLAG_PRECISION,
                   min_true: int = MIN_FLAG_POSITIVES, negatives_share: float = 1.0) \
        -> tuple[float | None, float | None, float | None]:
    """(threshold, precision, recall): the lowest threshold >= `floor` whose precision on these photos
    reaches `precision` with at least `min_true` true positives at or above it, flagging at most
    `negatives_share` of the photos without the class; (None, ...) if none does."""
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order].astype(bool)
    tp, n = np.cumsum(p), np.arange(1, len(s) + 1)
    fp_allowed = np.floor(negatives_share * (~p).sum() + 1e-9)
    best = None
    for i in range(len(s)):
        if s[i] < floor:
            break
        if (i + 1 < len(s) and s[i + 1] == s[i]):
            continue  # a threshold takes every photo with an equal score
        if tp[i] >= min_true and tp[i] / n[i] >= precision and n[i] - tp[i] <= fp_allowed:
            best = i
    if best is None:
        return None, None, None
    return float(s[best]), float(tp[best] / n[best]), float(tp[best] / max(1, p.sum()))


def calibrate_class(label: str, head: np.ndarray, detector: np.ndarray | None, positive: np.ndarray,
                    served_review: float, served_flag: float | None, budget: float = DEFAULT_BUDGET,
                    head_may_flag: bool = True) -> ClassCalibration:
    """One class's thresholds on the calibration photos (see the module docstring)."""
    positive = positive.astype(bool)
    neg_head = head[~positive]
    if detector is None:
        candidates = [float("inf")]  # the head alone: the detector never fires
        detector = np.zeros_like(head)
    else:
        neg_det = detector[~positive]
        candidates = [served_review, *(review_threshold(neg_det, budget * q) for q in (0.0, 0.25, 0.5, 0.75, 1.0))]
    results = []
    for d in candidates:
        det_fires = detector >= d
        if det_fires[~positive].mean() > budget + 1e-12 if (~positive).any() else False:
            continue
        h = review_threshold(neg_head[~det_fires[~positive]], _remaining(det_fires[~positive], budget))
        found = (det_fires | (head >= h))
        recall = float(found[positive].mean()) if positive.any() else None
        results.append((d, h, recall))
    if not results:  # even the served detector threshold overspends: the detector alone takes it all
        d = review_threshold(detector[~positive], budget)
        results = [(d, review_threshold(neg_head, 0.0), None)]
    served = [r for r in results if r[0] == served_review]
    if positive.sum() < MIN_POSITIVES and served:
        d, h, recall = served[0]
    else:
        d, h, recall = max(results, key=lambda r: ((r[2] or 0.0), r[0] == served_review, r[0]))
    fires = (detector >= d) | (head >= h)
    flag, precision, flag_recall = flag_threshold(head, positive, floor=h, negatives_share=budget * FLAG_SHARE_OF_BUDGET) \
        if head_may_flag else (None, None, None)
    detector_flag = None if served_flag is None or not np.isfinite(d) else max(served_flag, d)  # never below review
    return ClassCalibration(label, h, flag, d, detector_flag, float(fires[~positive].mean()) if (~positive).any() else 0.0,
                            float(fires[positive].mean()) if positive.any() else None, int(positive.sum()),
                            int((~positive).sum()), precision, flag_recall)


def _remaining(det_fires_on_negatives: np.ndarray, budget: float) -> float:
    """The share of the photos the detector leaves clear that the head may still send to review."""
    n = len(det_fires_on_negatives)
    left = n - int(det_fires_on_negatives.sum())
    return max(0.0, (budget * n - det_fires_on_negatives.sum()) / left) if left else 0.0
