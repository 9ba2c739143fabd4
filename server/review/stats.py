"""What reviewers decided, per day, model version and class (the model's class: the item's
strongest find). Honest counts: a fix that changes the class is a miss for the model's class
(`relabelled`, and to what), not a confirmed flag; a fix that keeps the class moved boxes only.
Rejects are counted by reason. No protocol here."""

from __future__ import annotations

from sqlalchemy import String, func, select
from sqlalchemy.orm import Session, sessionmaker

from server.review.outcomes import CONFIRMED, KEEPS_THE_CLASS, MOVED, REJECTED, RELABELLED
from server.review.schema import DECIDED, Item

_OF_DECISION = {"confirm": CONFIRMED, "reject": REJECTED, "fix": MOVED}
"""For rows written without an outcome (the benchmark's bulk fill)."""


def _row(day: str, version: str, label: str) -> dict:
    return {"day": day, "model_version": version, "label": label or "(none)", "flags": 0, "flags_confirmed": 0,
            "reviews": 0, "reviews_rejected": 0, CONFIRMED: 0, MOVED: 0, REJECTED: 0, RELABELLED: 0,
            "relabelled_to": {}, "reasons": {}}


def stats(sessions: sessionmaker[Session]) -> list[dict]:
    """One row per (day, model version, model's class), sorted; see the module docstring."""
    day = func.substr(func.cast(Item.decided_at, type_=String(40)), 1, 10)
    keys = (day, Item.model_version, Item.top_label, Item.verdict, Item.decision, Item.outcome, Item.relabelled_to, Item.reason)
    with sessions() as session:
        rows = session.execute(select(*keys, func.count()).where(Item.state == DECIDED).group_by(*keys)).all()
    table: dict[tuple, dict] = {}
    for d, version, label, verdict, decision, outcome, to, reason, n in rows:
        row = table.setdefault((d, version, label), _row(d, version, label))
        outcome = outcome or _OF_DECISION.get(decision, MOVED)
        row[outcome] += n
        if outcome == RELABELLED:
            row["relabelled_to"][to or "?"] = row["relabelled_to"].get(to or "?", 0) + n
        if outcome == REJECTED:
            key = reason or "unspecified"
            row["reasons"][key] = row["reasons"].get(key, 0) + n
        if verdict == "FLAG":
            row["flags"] += n
            row["flags_confirmed"] += n if outcome in KEEPS_THE_CLASS else 0
        else:
            row["reviews"] += n
            row["reviews_rejected"] += n if outcome == REJECTED else 0
    for row in table.values():
        row["flag_precision"] = row["flags_confirmed"] / row["flags"] if row["flags"] else None
        row["review_reject_rate"] = row["reviews_rejected"] / row["reviews"] if row["reviews"] else None
    return sorted(table.values(), key=lambda r: (r["day"], r["model_version"], r["label"]))
