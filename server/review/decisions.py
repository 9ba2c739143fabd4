"""Decisions and their audit log: decide, undo one's last decision, the history. No protocol here.

Every decision is one transaction: the item's new state and its audit row are written together or
not at all, so a crash in the middle loses nothing and records nothing half-done. An undo is a
decision like any other (its own row in `decisions`, with before and after): the item goes back
to the queue, held by the reviewer who undid it, and only that reviewer's latest decision can be
undone (an item someone else decided is theirs to undo, and an older one may have been built on).
The own bank's entry of a confirmed photo is written in the same transaction (server.review.own_bank).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from server.review import own_bank
from server.review.intake import check_box
from server.review.outcomes import outcome_of
from server.review.schema import ACTIONS, DECIDED, DECISIONS, QUEUED, REASONS, UNDO, Decision, Item
from server.review.clock import aware, now

MAX_NOTE = 2000
MAX_BOXES = 300


def _check(action: str, note: str, reason: str | None) -> None:
    if action not in ACTIONS:
        raise InvalidInput(f"action {action[:20]!r} is not one of {', '.join(ACTIONS)}")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise InvalidInput(f"the note must be text of at most {MAX_NOTE} characters")
    if reason is None:
        return
    if action != "reject":
        raise InvalidInput("a reason goes with a reject only")
    if not isinstance(reason, str) or reason not in REASONS:
        raise InvalidInput(f"reason {str(reason)[:40]!r} is not one of {', '.join(REASONS)}")
    if reason == "other" and not note.strip():
        raise InvalidInput("a reject for reason 'other' needs a note that says why")


def final_boxes(item: Item, action: str, boxes: list | None) -> list[dict]:
    if action == "reject":
        return []  # a false flag: the image is a hard negative
    if action == "confirm":
        return [{k: d[k] for k in ("label", "class_id", "x_min", "y_min", "x_max", "y_max")}
                for d in item.detections if d.get("strong")]
    if not isinstance(boxes, list) or len(boxes) > MAX_BOXES:
        raise InvalidInput(f"a fix sends the corrected boxes: a list of at most {MAX_BOXES}")
    return [check_box(b, item.width, item.height, f"boxes[{i}]") for i, b in enumerate(boxes)]


def _state(item: Item) -> dict:
    return {"state": item.state, "decision": item.decision, "reason": item.reason,
            "boxes": item.final_boxes if item.final_boxes is not None else item.detections}


def decide(sessions: sessionmaker[Session], item_id: int, reviewer: str, action: str, boxes: list | None = None,
           note: str = "", reason: str | None = None, banking: own_bank.Banking | None = None) -> Item:
    """Record `action` by `reviewer` on their claimed item; returns the item as it is after.

    With `banking`, a confirm or fix adds the photo's hash to the own bank in the same transaction
    (server.review.own_bank); a reject takes back what the item stood behind, with or without."""
    _check(action, note, reason)
    with sessions() as session, session.begin():
        item = session.get(Item, item_id, with_for_update=True)
        if item is None:
            raise NotFound(f"no item {item_id}")
        if item.state != QUEUED:
            raise Conflict(f"item {item_id} was already decided ({item.decision} by {item.decided_by})")
        if item.claimed_by != reviewer:
            raise Conflict(f"item {item_id} is not claimed by you; take it from the queue first")
        before = _state(item)
        if action == "skip":
            after = {"state": QUEUED, "decision": None}
        else:
            item.final_boxes = final_boxes(item, action, boxes)
            item.state, item.decision, item.decided_by, item.decided_at = DECIDED, action, reviewer, now()
            item.reason = reason
            item.outcome, item.relabelled_to = outcome_of(action, item.detections, item.final_boxes)
            after = _state(item)
            banked, remark = own_bank.after_decision(session, item, action, reviewer, banking)
            if banked is not None:
                after["own_bank"] = banked
            if remark:
                note = f"{note}\n{remark}" if note else remark
        item.claimed_by, item.claim_expires = None, None
        session.add(Decision(item_id=item_id, reviewer=reviewer, at=now(), action=action, before=before, after=after, note=note))
    return item


def _last_decision(session: Session, reviewer: str) -> Decision | None:
    return session.scalar(select(Decision).where(Decision.reviewer == reviewer, Decision.action.in_(DECISIONS))
                          .order_by(Decision.id.desc()).limit(1))


def undoable(sessions: sessionmaker[Session], reviewer: str) -> int | None:
    """The item of `reviewer`'s last decision, while it still stands (nobody undid it)."""
    with sessions() as session:
        last = _last_decision(session, reviewer)
        if last is None:
            return None
        item = session.get(Item, last.item_id)
        return item.id if item is not None and item.state == DECIDED and item.decided_by == reviewer else None


def undo(sessions: sessionmaker[Session], item_id: int, reviewer: str, claim: timedelta) -> Item:
    """Take back `reviewer`'s last decision, on `item_id`: the item is queued again, held by them."""
    with sessions() as session, session.begin():
        item = session.get(Item, item_id, with_for_update=True)
        if item is None:
            raise NotFound(f"no item {item_id}")
        if item.state != DECIDED:
            raise Conflict(f"item {item_id} is not decided: there is nothing to undo")
        if item.decided_by != reviewer:
            raise PermissionDenied(f"item {item_id} was decided by {item.decided_by}: only they can undo it")
        last = _last_decision(session, reviewer)
        if last is None or last.item_id != item_id:
            raise Conflict(f"only your last decision can be undone; it was on item {last.item_id if last else '-'}")
        before = _state(item)
        moment = now()
        after = {"state": QUEUED, "decision": None}
        released = own_bank.release(session, item, reviewer)  # the own bank's entry goes with the decision
        if released is not None:
            after["own_bank"] = released
        item.state, item.decision, item.final_boxes, item.decided_by, item.decided_at = QUEUED, None, None, None, None
        item.reason, item.outcome, item.relabelled_to = None, None, None
        item.claimed_by, item.claim_expires = reviewer, moment + claim
        session.add(Decision(item_id=item_id, reviewer=reviewer, at=moment, action=UNDO, before=before, after=after, note=""))
    return item


def history(sessions: sessionmaker[Session], item_id: int) -> list[dict]:
    with sessions() as session:
        rows = session.scalars(select(Decision).where(Decision.item_id == item_id).order_by(Decision.id))
        return [{"reviewer": d.reviewer, "at": aware(d.at).isoformat(), "action": d.action, "before": d.before,
                 "after": d.after, "note": d.note} for d in rows]
