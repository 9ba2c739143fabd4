import numpy as np
import pytest

from training.steps.calibrate import calibrate_class, operating_point


def test_review_reaches_target_recall_and_flag_target_precision():
    rng = np.random.default_rng(0)
    positives = np.r_[np.ones(100, bool), np.zeros(400, bool)]
    scores = np.r_[rng.uniform(0.3, 1.0, 100), rng.uniform(0.0, 0.6, 400)]
    cal = calibrate_class(scores, positives, target_precision=0.9, target_recall=0.9, review_budget=None)
    assert cal.review.recall >= 0.9
    assert operating_point(scores, positives, cal.review_threshold + 0.02).recall < 0.9 or cal.review_threshold > 0.95
    assert cal.flag is not None and cal.flag.precision >= 0.9
    lower = operating_point(scores, positives, cal.flag_threshold - 0.01)
    assert lower.precision < 0.9
    assert cal.flag_threshold >= cal.review_threshold


def test_a_class_that_cannot_reach_the_precision_never_flags():
    rng = np.random.default_rng(1)
    positives = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    scores = rng.uniform(0.2, 0.9, 100)  # no separation at all
    cal = calibrate_class(scores, positives, target_precision=0.95)
    assert cal.flag is None and "never flags" in cal.note


def test_too_few_positives_is_not_calibrated():
    cal = calibrate_class(np.array([0.9, 0.1, 0.2]), np.array([True, False, False]))
    assert cal.flag is None and cal.review_threshold == pytest.approx(0.25) and "only 1" in cal.note


def test_the_review_budget_beats_the_recall_target():
    rng = np.random.default_rng(2)
    positives = np.r_[np.ones(50, bool), np.zeros(500, bool)]
    scores = np.r_[rng.uniform(0.05, 0.9, 50), rng.uniform(0.0, 0.5, 500)]  # reaching 90% recall costs many false reviews
    free = calibrate_class(scores, positives, review_budget=None)
    budgeted = calibrate_class(scores, positives, review_budget=0.05)
    assert free.review.recall >= 0.9 and free.review.false_positive_rate > 0.05
    assert budgeted.review.false_positive_rate <= 0.05 and budgeted.review_threshold > free.review_threshold
    assert "review budget" in budgeted.note
