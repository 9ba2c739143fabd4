"""What a decision says about the model's class: the table behind the honest stats."""

from __future__ import annotations

import pytest

from server.review.outcomes import outcome_of


def box(label: str, x1: float = 10, y1: float = 10, x2: float = 60, y2: float = 50, **extra) -> dict:
    return {"label": label, "x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2, **extra}


MODEL = [box("live_reptile", strong=True, confidence=0.9), box("ivory", 70, 70, 90, 90, strong=False, confidence=0.1)]


@pytest.mark.parametrize("decision, final, expected", [
    ("confirm", [box("live_reptile")], ("confirmed", None)),
    ("reject", [], ("rejected", None)),
    ("fix", [], ("rejected", None)),  # every box deleted: a false find
    ("fix", [box("live_reptile")], ("confirmed", None)),  # saved unchanged
    ("fix", [box("live_reptile", 12, 10, 80, 70)], ("moved", None)),
    ("fix", [box("live_reptile"), box("ivory", 100, 10, 140, 40)], ("moved", None)),  # a missed box added
    ("fix", [box("pangolin_scales")], ("relabelled", "pangolin_scales")),  # the pangolin called live_reptile
    ("fix", [box("pangolin_scales", 100, 60, 150, 110)], ("relabelled", "pangolin_scales")),  # deleted, drawn elsewhere
    ("fix", [box("live_reptile", 100, 60, 150, 110)], ("moved", None)),  # same class, another place
])
def test_outcome_of_a_decision(decision, final, expected):
    assert outcome_of(decision, MODEL, final) == expected
