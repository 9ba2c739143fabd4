"""The review queue: add, claim the next item or one by id, list and count; decisions
(server.review.decisions) and stats (server.review.stats) are reached through it. No protocol here.

One image is one item: intake looks an image up by its sha256 (`image_key`, unique), so the same
photo from the server's feed and from the CLI, whatever their request ids, is queued once.
A claim is a lease: an item claimed by one reviewer is invisible to others until the claim
expires; taking the next item is a conditional UPDATE, so two reviewers never get the same one
(on PostgreSQL the candidate row is also locked with SKIP LOCKED).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from server.core.decoding import DecodeLimits
from server.core.errors import Conflict, NotFound
from server.review import decisions
from server.review import own_bank as own_bank_module
from server.review.banks import BankStore
from server.review.clock import aware, now
from server.review.database import sessions
from server.review.intake import QUEUED_VERDICTS, read_submission, store_image
from server.review.listing import Filters, version_key
from server.review.schema import DECIDED, QUEUED, Item
from server.review.stats import stats

MAX_LISTING_ITEMS = 24
QUEUE_ORDER = (Item.priority.desc(), Item.top_confidence.desc(), Item.id)
QUEUE_ORDER_TEXT = "FLAG before REVIEW, then the strongest find first, then the oldest"
VERDICT_OF_PRIORITY = {priority: verdict.lower() for verdict, priority in QUEUED_VERDICTS.values()}


@dataclass(frozen=True)
class Added:
    item_id: int
    created: bool


def _with_context(item: Item) -> list[dict]:
    """Each box with its class's review and flag thresholds, and which box made the verdict: the
    strongest one that reached the verdict's threshold (flag for FLAG, review for REVIEW)."""
    limits = {t.get("label"): t for t in item.thresholds or [] if isinstance(t, dict)}
    out, deciding = [], None
    for i, d in enumerate(item.detections):
        t = limits.get(d["label"], {})
        review, flag = t.get("review_threshold"), t.get("flag_threshold")
        out.append({**d, "review_threshold": review, "flag_threshold": flag, "deciding": False})
        bar = flag if item.verdict == "FLAG" else review
        if deciding is None and bar is not None and d["confidence"] >= bar:
            deciding = i
    if deciding is not None:
        out[deciding]["deciding"] = True
    return out


def item_view(item: Item) -> dict:
    """An item as the page and the API show it."""
    return {
        "id": item.id, "request_id": item.request_id, "listing_id": item.listing_id, "verdict": item.verdict,
        "source_path": item.source_path, "width": item.width, "height": item.height,
        "detections": _with_context(item), "thresholds": item.thresholds, "top_label": item.top_label,
        "top_confidence": item.top_confidence,
        "model": {"name": item.model_name, "version": item.model_version, "sha256": item.model_sha256},
        "arrived_at": aware(item.arrived_at).isoformat(), "state": item.state, "decision": item.decision,
        "reason": item.reason, "outcome": item.outcome, "relabelled_to": item.relabelled_to,
        "final_boxes": item.final_boxes, "decided_by": item.decided_by,
        "decided_at": aware(item.decided_at).isoformat() if item.decided_at else None, "claimed_by": item.claimed_by,
        "claim_expires": aware(item.claim_expires).isoformat() if item.claim_expires else None,
        "image_url": f"/items/{item.id}/image", "page_url": f"/items/{item.id}",
        "matches": item.matches or [], "screen_decided_by": item.screen_decided_by or "",
        "image_scores": _image_scores_with_thresholds(item), "head": item.head, "banked_in": item.banked_in,
    }


def _image_scores_with_thresholds(item: Item) -> list[dict]:
    """The head's scores, each with its class's image-level review and flag thresholds."""
    limits = {t.get("label"): t for t in item.image_thresholds or [] if isinstance(t, dict)}
    return [{**s, "review_threshold": limits.get(s["label"], {}).get("review_threshold"),
             "flag_threshold": limits.get(s["label"], {}).get("flag_threshold")} for s in item.image_scores or []]


class ReviewStore:
    def __init__(self, engine: Engine, data_dir: Path, claim_seconds: float = 600.0,
                 limits: DecodeLimits = DecodeLimits(), own_bank: str = "", own_bank_organisation: str = "") -> None:
        self.engine = engine
        self.sessions = sessions(engine)
        self.images_dir = Path(data_dir) / "images"
        self.lease = timedelta(seconds=claim_seconds)
        self.limits = limits
        self.own_bank = own_bank
        """Where confirmed photos' hashes go (server.review.own_bank); "" keeps them out of every bank."""
        if own_bank:
            own_bank_module.ensure(BankStore(engine), own_bank, own_bank_organisation)

    # intake ------------------------------------------------------------------------------------
    def add(self, image: bytes, result: dict, listing_id: str = "") -> Added:
        """Queue a screened image; an image already queued (by its sha256) is that item, whoever sent it."""
        sub, keep, _ = read_submission(image, result, listing_id or str(result.get("request_id") or ""), self.limits)
        store_image(self.images_dir, sub.image_file, keep)
        with self.sessions() as session:
            existing = session.scalar(select(Item.id).where(Item.image_key == sub.sha256))
            if existing is not None:
                return Added(existing, False)
            item = Item(
                image_sha256=sub.sha256, image_key=sub.sha256, image_file=sub.image_file, source_path=sub.source_path, width=sub.width,
                height=sub.height, request_id=sub.request_id, listing_id=sub.listing_id, verdict=sub.verdict,
                priority=sub.priority, top_confidence=sub.top_confidence, top_label=sub.top_label,
                detections=sub.detections, thresholds=sub.thresholds, model_name=sub.model["name"],
                model_version=sub.model["version"], model_sha256=sub.model["sha256"], arrived_at=now(), state=QUEUED,
                matches=sub.matches, screen_decided_by=sub.screen_decided_by, image_scores=sub.image_scores,
                image_thresholds=sub.image_thresholds, head=sub.head, embedding=sub.embedding,
                embedding_model=sub.embedding_model,
            )
            session.add(item)
            try:
                session.commit()
            except IntegrityError:  # the same image, a moment earlier, from another request
                session.rollback()
                return Added(session.scalar(select(Item.id).where(Item.image_key == sub.sha256)), False)
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
                    if i.state == QUEUED and i.claim_expires is not None and aware(i.claim_expires) > moment
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
                    claimed_by=reviewer, claim_expires=moment + self.lease)).rowcount
                session.commit()
                if taken:
                    return session.get(Item, item_id, populate_existing=True)
        return None

    def claim(self, item_id: int, reviewer: str) -> Item:
        """Claim one item by id (opened from the list or a link): free, expired or already theirs."""
        moment = now()
        with self.sessions() as session:
            item = session.get(Item, item_id)
            if item is None:
                raise NotFound(f"no item {item_id}")
            if item.state != QUEUED:
                raise Conflict(f"item {item_id} was already decided ({item.decision} by {item.decided_by})")
            free = or_(Item.claimed_by.is_(None), Item.claim_expires <= moment, Item.claimed_by == reviewer)
            taken = session.execute(update(Item).where(Item.id == item_id, Item.state == QUEUED, free).values(
                claimed_by=reviewer, claim_expires=moment + self.lease).execution_options(synchronize_session=False)).rowcount
            session.commit()
            item = session.get(Item, item_id, populate_existing=True)
            if not taken:
                raise Conflict(f"item {item_id} is held by {item.claimed_by} until "
                               f"{aware(item.claim_expires).strftime('%H:%M:%S')} UTC" if item.state == QUEUED
                               else f"item {item_id} was decided meanwhile ({item.decision} by {item.decided_by})")
            return item

    def position(self, item: Item) -> tuple[int, int] | None:
        """(n, total): the item is the n-th of the `total` queued, in queue order; None once decided."""
        if item.state != QUEUED:
            return None
        ahead = or_(Item.priority > item.priority,
                    and_(Item.priority == item.priority, or_(Item.top_confidence > item.top_confidence,
                         and_(Item.top_confidence == item.top_confidence, Item.id < item.id))))
        with self.sessions() as session:
            before = session.scalar(select(func.count()).where(Item.state == QUEUED, ahead))
            total = session.scalar(select(func.count()).where(Item.state == QUEUED))
        return before + 1, total

    def listing(self, item: Item) -> list[Item]:
        """The other items of the same listing (its other photos), oldest first."""
        with self.sessions() as session:
            return list(session.scalars(select(Item).where(Item.listing_id == item.listing_id, Item.id != item.id)
                                        .order_by(Item.id).limit(MAX_LISTING_ITEMS)))

    def versions(self) -> list[str]:
        """The model versions in the store, oldest first (read from their index)."""
        with self.sessions() as session:
            return sorted(session.scalars(select(Item.model_version).distinct()), key=version_key)

    def find(self, filters: Filters) -> tuple[list[Item], int]:
        """A page of the items `filters` ask for, in queue order, and how many there are in all:
        the ids from the queue index first, so that a deep page skips index entries, not rows."""
        where = filters.condition(now(), self.versions() if filters.min_version else [])
        ids = select(Item.id).where(where).order_by(*QUEUE_ORDER).offset(filters.offset).limit(filters.limit)
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(Item).where(where))
            items = list(session.scalars(select(Item).where(Item.id.in_(ids.scalar_subquery())).order_by(*QUEUE_ORDER)))
        return items, total

    def page(self, offset: int = 0, limit: int = 50) -> list[Item]:
        """The queue as a list, in queue order (for the benchmark and tests)."""
        return self.find(Filters(offset=max(0, offset), limit=min(max(1, limit), 500)))[0]

    def held_by_others(self, reviewer: str) -> int:
        """Queued items that other reviewers hold right now: why the queue can look empty to one."""
        moment = now()
        with self.sessions() as session:
            return session.scalar(select(func.count()).where(Item.state == QUEUED, Item.claimed_by.is_not(None),
                                                             Item.claimed_by != reviewer, Item.claim_expires > moment))

    def still_queued(self, ids: tuple[int, ...]) -> int:
        """How many of `ids` (the items a reviewer skipped) are still in the queue."""
        if not ids:
            return 0
        with self.sessions() as session:
            return session.scalar(select(func.count()).where(Item.id.in_(ids), Item.state == QUEUED))

    # decisions (server.review.decisions) ----------------------------------------------------------
    def decide(self, item_id: int, reviewer: str, action: str, boxes: list | None = None, note: str = "",
               reason: str | None = None) -> dict:
        """Record `action` by `reviewer` on their claimed item; returns the item as it is after. A
        confirm or fix also banks the photo's hash in the own bank, hashed here, before the transaction."""
        banking = None
        if self.own_bank and action in ("confirm", "fix"):
            image = self.images_dir / self.get(item_id).image_file
            banking = own_bank_module.Banking(self.own_bank, own_bank_module.fingerprint(image, self.limits))
        return item_view(decisions.decide(self.sessions, item_id, reviewer, action, boxes, note, reason, banking))

    def undo(self, item_id: int, reviewer: str) -> dict:
        """Take back `reviewer`'s last decision (on `item_id`); the item is theirs again."""
        return item_view(decisions.undo(self.sessions, item_id, reviewer, self.lease))

    def undoable(self, reviewer: str) -> int | None:
        return decisions.undoable(self.sessions, reviewer)

    def history(self, item_id: int) -> list[dict]:
        return decisions.history(self.sessions, item_id)

    def decided(self) -> list[Item]:
        with self.sessions() as session:
            return list(session.scalars(select(Item).where(Item.state == DECIDED).order_by(Item.id)))

    def stats(self) -> list[dict]:
        """Per day, model version and class: see server.review.stats."""
        return stats(self.sessions)
