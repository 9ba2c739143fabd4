"""What a reviewer's decision says about the model's class: the honest count behind the stats.

A fix is not a confirmation. When the reviewer changes the class of the box that made the verdict
(a pangolin called `live_reptile`), the model missed for its class: `relabelled`, to the new class.
When the class stays and only the boxes change, the model was right about what, not where:
`moved`. Pure functions, so the store and migration 0003 (which fills in old decisions) agree.
"""

from __future__ import annotations

from collections import Counter

CONFIRMED, MOVED, RELABELLED, REJECTED = "confirmed", "moved", "relabelled", "rejected"
OUTCOMES = (CONFIRMED, MOVED, RELABELLED, REJECTED)
KEEPS_THE_CLASS = (CONFIRMED, MOVED)
"""Outcomes in which the model's class was right: what a flag's precision counts."""
MATCH_IOU = 0.3
SAME_PIXELS = 1.0


def _iou(a: dict, b: dict) -> float:
    w = min(a["x_max"], b["x_max"]) - max(a["x_min"], b["x_min"])
    h = min(a["y_max"], b["y_max"]) - max(a["y_min"], b["y_min"])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = lambda r: (r["x_max"] - r["x_min"]) * (r["y_max"] - r["y_min"])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _same_place(a: dict, b: dict) -> bool:
    return all(abs(a[k] - b[k]) <= SAME_PIXELS for k in ("x_min", "y_min", "x_max", "y_max"))


def outcome_of(decision: str, detections: list[dict], final_boxes: list[dict] | None) -> tuple[str, str | None]:
    """(outcome, the class it was relabelled to or None) for a decided item.

    The model's claim is its strongest shown box (the first strong detection; intake sorts them).
    """
    if decision == "confirm":
        return CONFIRMED, None
    final = final_boxes or []
    if decision == "reject" or not final:
        return REJECTED, None
    shown = [d for d in detections if d.get("strong")] or detections[:1]
    if not shown:
        return MOVED, None  # nothing was claimed; the reviewer drew what the model missed
    claim = shown[0]
    best = max(final, key=lambda b: _iou(claim, b))
    if _iou(claim, best) >= MATCH_IOU:
        if best["label"] != claim["label"]:
            return RELABELLED, best["label"]
    elif not any(b["label"] == claim["label"] for b in final):
        return RELABELLED, Counter(b["label"] for b in final).most_common(1)[0][0]
    unchanged = len(final) == len(shown) and all(
        any(b["label"] == d["label"] and _same_place(b, d) for b in final) for d in shown)
    return (CONFIRMED, None) if unchanged else (MOVED, None)
