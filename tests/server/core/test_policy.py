import numpy as np
import pytest

from server.core.policy import ClassPolicy, Verdict, decide, verdicts_for


@pytest.mark.parametrize(
    "confidence,expected",
    [(0.1, Verdict.CLEAR), (0.3, Verdict.REVIEW), (0.59, Verdict.REVIEW), (0.6, Verdict.FLAG), (0.99, Verdict.FLAG)],
)
def test_verdict_for_confidence(confidence, expected):
    assert ClassPolicy(0, "ivory", 0.3, 0.6).verdict_for(confidence) == expected


def test_class_without_flag_threshold_never_flags():
    assert ClassPolicy(1, "pangolin_scales", 0.2, None).verdict_for(0.999) == Verdict.REVIEW


def test_image_verdict_is_the_strongest():
    policies = {0: ClassPolicy(0, "ivory", 0.3, 0.6), 3: ClassPolicy(3, "live_reptile", 0.5, 0.9)}
    verdicts = verdicts_for(policies, np.array([0, 3]), np.array([0.35, 0.95]))
    assert verdicts == [Verdict.REVIEW, Verdict.FLAG]
    assert decide(verdicts) == Verdict.FLAG
    assert decide([]) == Verdict.CLEAR


@pytest.mark.parametrize("review,flag", [(0.0, 0.5), (0.6, 0.5), (0.5, 1.5)])
def test_inconsistent_thresholds_are_refused(review, flag):
    with pytest.raises(ValueError):
        ClassPolicy(0, "ivory", review, flag)
