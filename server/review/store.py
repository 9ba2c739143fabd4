"""The review queue: add, claim the next item, decide, and the audit log; no protocol here.

Every decision is one transaction: the item's new state and its audit row are written together or
not at all, so a crash in the middle of a decision loses nothing and records nothing half-done.
A claim is a lease: an item claimed by one reviewer is invisible to others until the claim
expires; taking the next item is a conditional UPDATE, so two reviewers never get the same one
(on PostgreSQL the candidate row is also locked with SKIP LOCKED).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Engine, String, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from server.core.decoding import DecodeLimits
from server.core.errors import Conflict, InvalidInput, NotFound
from server.review.database import sessions
from server.review.intake import QUEUED_VERDICTS, check_box, read_submission, store_image
from server.review.schema import ACTIONS, DECIDED, QUEUED, Decision, Item

MAX_NOTE = 2000
QUEUE_ORDER = (Item.priority.desc(), Item.top_confidence.desc(), Item.id)
QUEUE_ORDER_TEXT = "FLAG before REVIEW, then the strongest find first, then the oldest"
VERDICT_OF_PRIORITY = {priority: verdict.lower() for verdict, priority in QUEUED_VERDICTS.values()}


def now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


@dataclass(frozen=True)
class Added:
    item_id: int
    created: bool


def item_view(item: Item) -> dict:
    """An item as the page and the API show it."""
    return {
        "id": item.id, "request_id": item.request_id, "listing_id": item.listing_id, "verdict": item.verdict,
        "width": item.width, "height": item.height, "detections": item.detections, "thresholds": item.thresholds,
        "model": {"name": item.model_name, "version": item.model_version, "sha256": item.model_sha256},
        "arrived_at": _aware(item.arrived_at).isoformat(), "state": item.state, "decision": item.decision,
        "final_boxes": item.final_boxes, "claimed_by": item.claimed_by,
        "claim_expires": _aware(item.claim_expires).isoformat() if item.claim_expires else None,
        "image_url": f"/items/{item.id}/image",
    }


class ReviewStore:
    def __init__(self, engine: Engine, data_dir: Path, claim_seconds: float = 600.0,
                 limits: DecodeLimits = DecodeLimits()) -> None:
        self.engine = engine
        self.sessions = sessions(engine)
        self.images_dir = Path(data_dir) / "images"
        self.claim = timedelta(seconds=claim_seconds)
        self.limits = limits

    # intake ------------------------------------------------------------------------------------
    def add(self, image: bytes, result: dict, listing_id: str = "") -> Added:
        """Queue a screened image; the same image with the same request id is the same item."""
        sub, keep, _ = read_submission(image, result, listing_id or str(result.get("request_id") or ""), self.limits)
        store_image(self.images_dir, sub.image_file, keep)
        with self.sessions() as session:
            existing = session.scalar(select(Item.id).where(Item.image_sha256 == sub.sha256, Item.request_id == sub.request_id))
            if existing is not None:
                return Added(existing, False)
            item = Item(
                image_sha256=sub.sha256, image_file=sub.image_file, source_path=sub.source_path, width=sub.width,
                height=sub.height, request_id=sub.request_id, listing_id=sub.listing_id, verdict=sub.verdict,
                priority=sub.priority, top_confidence=sub.top_confidence, top_label=sub.top_label,
                detections=sub.detections, thresholds=sub.thresholds, model_name=sub.model["name"],
                model_version=sub.model["version"], model_sha256=sub.model["sha256"], arrived_at=now(), state=QUEUED,
            )
            session.add(item)
            try:
                session.commit()
            except IntegrityError:  # the same submission, a moment earlier, from another request
                session.rollback()
                return Added(session.scalar(select(Item.id).where(
                    Item.image_sha256 == sub.sha256, Item.request_id == sub.request_id)), False)
            return Added(item.id, True)

    # the queue ---------------------------------------------------------------------------------
    def get(self, item_id: int) -> Item:
        with self.sessions() as session:
            item = session.get(Item, item_id)
            if item is None:
                raise NotFound(f"no item {item_id}")
            return item

    def image_path(self, item_id: int) -> Path:
        return self.images_dir / self.get(item_id).image_file

    def counts(self) -> dict[str, int]:
        """Queued FLAG and REVIEW items and decided ones, read from the queue index alone
        (priority stands for the verdict: the verdict column would mean reading every row)."""
        with self.sessions() as session:
            rows = session.execute(select(Item.state, Item.priority, func.count()).group_by(Item.state, Item.priority)).all()
        out = {"queued_flag": 0, "queued_review": 0, "decided": 0}
        for state, priority, n in rows:
            key = "decided" if state == DECIDED else f"queued_{VERDICT_OF_PRIORITY.get(priority, 'other')}"
            out[key] = out.get(key, 0) + n
        return out

    def next_for(self, reviewer: str, skip: tuple[int, ...] = ()) -> Item | None:
        """The item `reviewer` holds, or the first free one in queue order, claimed for them."""
        moment = now()
        with self.sessions() as session:
            # Only the claimed_by index in this query, the rest sorted here: a reviewer holds a few
            # items, and with a queue-order clause SQLite would walk the whole queue index instead.
            held = [i for i in session.scalars(select(Item).where(Item.claimed_by == reviewer))
                    if i.state == QUEUED and i.claim_expires is not None and _aware(i.claim_expires) > moment
                    and i.id not in skip]
            if held:
                return min(held, key=lambda i: (-i.priority, -i.top_confidence, i.id))
            for _ in range(8):
                free = or_(Item.claimed_by.is_(None), Item.claim_expires <= moment)
                candidate = select(Item.id).where(Item.state == QUEUED, free)
                if skip:
                    candidate = candidate.where(Item.id.not_in(skip))
                candidate = candidate.order_by(*QUEUE_ORDER).limit(1).with_for_update(skip_locked=True)
                item_id = session.scalar(candidate)
                if item_id is None:
                    session.rollback()
                    return None
                taken = session.execute(update(Item).where(Item.id == item_id, Item.state == QUEUED, free).values(
                    claimed_by=reviewer, claim_expires=moment + self.claim)).rowcount
                session.commit()
                if taken:
                    return session.get(Item, item_id, populate_existing=True)
        return None

    def page(self, offset: int = 0, limit: int = 50) -> list[Item]:
        """The queue as a list, in queue order (for the API and the benchmark): the ids from the
        queue index first, so that a deep page skips index entries, not whole rows."""
        ids = (select(Item.id).where(Item.state == QUEUED).order_by(*QUEUE_ORDER)
               .offset(max(0, offset)).limit(min(max(1, limit), 500)))
        with self.sessions() as session:
            return list(session.scalars(select(Item).where(Item.id.in_(ids.scalar_subquery())).order_by(*QUEUE_ORDER)))

    # decisions ---------------------------------------------------------------------------------
    def decide(self, item_id: int, reviewer: str, action: str, boxes: list | None = None, note: str = "") -> dict:
        """Record `action` by `reviewer` on their claimed item; returns the item as it is after."""
        if action not in ACTIONS:
            raise InvalidInput(f"action {action[:20]!r} is not one of {', '.join(ACTIONS)}")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise InvalidInput(f"the note must be text of at most {MAX_NOTE} characters")
        with self.sessions() as session, session.begin():
            item = session.get(Item, item_id, with_for_update=True)
            if item is None:
                raise NotFound(f"no item {item_id}")
            if item.state != QUEUED:
                raise Conflict(f"item {item_id} was already decided ({item.decision} by {item.decided_by})")
            if item.claimed_by != reviewer:
                raise Conflict(f"item {item_id} is not claimed by you; take it from the queue first")
            before = {"state": item.state, "decision": item.decision, "boxes": item.final_boxes or item.detections}
            if action == "skip":
                item.claimed_by, item.claim_expires = None, None
                after = {"state": QUEUED, "decision": None}
            else:
                item.final_boxes = self._final_boxes(item, action, boxes)
                item.state, item.decision, item.decided_by, item.decided_at = DECIDED, action, reviewer, now()
                item.claimed_by, item.claim_expires = None, None
                after = {"state": DECIDED, "decision": action, "boxes": item.final_boxes}
            session.add(Decision(item_id=item_id, reviewer=reviewer, at=now(), action=action, before=before,
                                 after=after, note=note))
        return item_view(item)

    @staticmethod
    def _final_boxes(item: Item, action: str, boxes: list | None) -> list[dict]:
        if action == "reject":
            return []  # a false flag: the image is a hard negative
        if action == "confirm":
            return [{k: d[k] for k in ("label", "class_id", "x_min", "y_min", "x_max", "y_max")}
                    for d in item.detections if d.get("strong")]
        if not isinstance(boxes, list) or len(boxes) > 300:
            raise InvalidInput("a fix sends the corrected boxes: a list of at most 300")
        return [check_box(b, item.width, item.height, f"boxes[{i}]") for i, b in enumerate(boxes)]

    def history(self, item_id: int) -> list[dict]:
        with self.sessions() as session:
            rows = session.scalars(select(Decision).where(Decision.item_id == item_id).order_by(Decision.id))
            return [{"reviewer": d.reviewer, "at": _aware(d.at).isoformat(), "action": d.action, "before": d.before,
                     "after": d.after, "note": d.note} for d in rows]

    def decided(self) -> list[Item]:
        with self.sessions() as session:
            return list(session.scalars(select(Item).where(Item.state == DECIDED).order_by(Item.id)))

    # stats -------------------------------------------------------------------------------------
    def stats(self) -> list[dict]:
        """Per day, model version and class (the item's top find): flags confirmed and reviews rejected."""
        day = func.substr(func.cast(Item.decided_at, type_=String(40)), 1, 10)
        with self.sessions() as session:
            rows = session.execute(
                select(day, Item.model_version, Item.top_label, Item.verdict, Item.decision, func.count())
                .where(and_(Item.state == DECIDED)).group_by(day, Item.model_version, Item.top_label, Item.verdict, Item.decision)
            ).all()
        table: dict[tuple, dict] = {}
        for d, version, label, verdict, decision, n in rows:
            row = table.setdefault((d, version, label), {"day": d, "model_version": version, "label": label or "(none)",
                                                         "flags": 0, "flags_confirmed": 0, "reviews": 0, "reviews_rejected": 0})
            kept = decision in ("confirm", "fix")
            if verdict == "FLAG":
                row["flags"] += n
                row["flags_confirmed"] += n if kept else 0
            else:
                row["reviews"] += n
                row["reviews_rejected"] += n if decision == "reject" else 0
        for row in table.values():
            row["flag_precision"] = row["flags_confirmed"] / row["flags"] if row["flags"] else None
            row["review_reject_rate"] = row["reviews_rejected"] / row["reviews"] if row["reviews"] else None
        return sorted(table.values(), key=lambda r: (r["day"], r["model_version"], r["label"]))
