import numpy as np
import pytest

from server.core.policy import ClassPolicy, Verdict, decide, image_verdicts, verdicts_for


@pytest.mark.parametrize(
    "confidence,expected",
    [(0.1, Verdict.CLEAR), (0.3, Verdict.REVIEW), (0.59, Verdict.REVIEW), (0.6, Verdict.FLAG), (0.99, Verdict.FLAG)],
)
def test_verdict_for_confidence(confidence, expected):
    assert verdicts_for([ClassPolicy(0, "ivory", 0.3, 0.6)], np.array([0]), np.array([confidence]))[0] == expected


def test_class_without_flag_threshold_never_flags():
    assert verdicts_for([ClassPolicy(1, "pangolin_scales", 0.2, None)], np.array([1]), np.array([0.999]))[0] == Verdict.REVIEW


def test_image_verdict_is_the_strongest():
    policies = {0: ClassPolicy(0, "ivory", 0.3, 0.6), 3: ClassPolicy(3, "live_reptile", 0.5, 0.9)}
    verdicts = verdicts_for(policies, np.array([0, 3]), np.array([0.35, 0.95]))
    assert list(verdicts) == [Verdict.REVIEW, Verdict.FLAG]
    assert decide(verdicts) == Verdict.FLAG
    assert decide([]) == Verdict.CLEAR


@pytest.mark.parametrize("review,flag", [(0.0, 0.5), (0.6, 0.5), (0.5, 1.5)])
def test_inconsistent_thresholds_are_refused(review, flag):
    with pytest.raises(ValueError):
        ClassPolicy(0, "ivory", review, flag)


def test_image_verdicts_of_scores_match_the_servers_decision_per_image():
    """The vectorised image-level rule (training evaluate) and the per-detection rule (server) agree."""
    rng = np.random.default_rng(0)
    policies = (ClassPolicy(0, "ivory", 0.3, 0.6), ClassPolicy(1, "pangolin_scales", 0.2, None), ClassPolicy(3, "live_reptile", 0.5, 0.9))
    scores = np.zeros((200, 4))
    server_side = []
    for i in range(200):
        class_ids, confidences = rng.integers(0, 4, rng.integers(0, 5)), rng.random(5)
        confidences = confidences[: len(class_ids)]
        np.maximum.at(scores[i], class_ids, confidences)
        server_side.append(decide(verdicts_for(policies, class_ids, confidences)))
    assert list(image_verdicts(scores, policies)) == server_side
    assert {int(v) for v in server_side} == {1, 2, 3}
