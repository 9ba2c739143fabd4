"""The platform's own bank: the PDQ hashes of the photos its reviewers confirmed, kept in step with
the decisions, so that a re-upload of a confirmed photo is caught by every screening server
(server.core.matching polls the banks by seq). No protocol here.

- A confirm, or a fix that keeps a box, adds the photo's hash (PDQ of the stored, upright image,
  decoded by the one decoder) with the deciding class as its label, the listing id as its
  reference and the reviewer as who added it; and the embedding the screening result carried, with
  its model's name, when it had one (so crops and frames of the photo are caught too). A hash below
  PDQ's quality floor (a flat or tiny image) is not added, and the decision's audit note says why.
- An undo of that decision removes the entry again (a tombstone: replicas drop it at their next
  poll); a reject never adds one (and takes back what the item still stood behind).
- The bank write is made on the decision's own connection, inside its transaction: a decided item
  and its bank entry are committed together or not at all.
- One hash can stand for several items (the same photo in two encodings): the entry stays while a
  confirmed item stands behind it (`Item.banked_in`). An entry the workbench did not add (from
  `banks add` or an import) is never claimed, so no undo removes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.core.decoding import DecodeLimits, decode
from server.core.errors import WildscreenError
from server.core.pdq import MIN_QUALITY, hash_image
from server.review.bank_schema import KNOWN_IMAGE
from server.review.banks import ENTRY_LABELS, BankStore, EntryInput, add_in, remove_in
from server.review.outcomes import REJECTED
from server.review.schema import Item

OWN_BANK_ACTION = "FLAG"
DESCRIPTION = "photos confirmed by this platform's reviewers (wildscreen-review)"
NOTE_PREFIX = "own bank:"


@dataclass(frozen=True)
class Fingerprint:
    """A stored photo's PDQ hash, or why there is none worth banking."""

    hash: str | None
    quality: int | None
    why_not: str = ""

    @property
    def usable(self) -> bool:
        return self.hash is not None and not self.why_not


@dataclass(frozen=True)
class Banking:
    """What a confirming decision banks: the own bank's name and the photo's fingerprint."""

    bank: str
    fingerprint: Fingerprint


def ensure(store: BankStore, name: str, organisation: str) -> None:
    """Create the own bank (action FLAG) at start if it is missing; an existing one is left as it is."""
    store.ensure(name, OWN_BANK_ACTION, organisation, DESCRIPTION)


def fingerprint(image: Path, limits: DecodeLimits) -> Fingerprint:
    """PDQ of the stored image (computed before the decision's transaction: it is CPU work)."""
    try:
        code = hash_image(decode(image.read_bytes(), limits).pixels)
    except (OSError, WildscreenError) as exc:
        return Fingerprint(None, None, f"the stored image could not be hashed ({exc})")
    if not code.usable:
        return Fingerprint(code.hex, code.quality, f"PDQ quality {code.quality} is below {MIN_QUALITY} (a flat or tiny "
                                                   "image): its hash would match unrelated photos")
    return Fingerprint(code.hex, code.quality)


def deciding_label(item: Item, action: str) -> str:
    """The class the reviewer confirmed: a fix's new class, else what decided the screening result
    (a matched entry's label, the head's class, the strongest box), else a known trafficking image."""
    final = [b["label"] for b in item.final_boxes or []]
    screened = _screened_label(item)
    if action == "fix" and final:
        return item.relabelled_to or (screened if screened in final else final[0])
    return screened or KNOWN_IMAGE


def _screened_label(item: Item) -> str:
    matched = [m["label"] for m in item.matches or [] if m.get("label") in ENTRY_LABELS]
    called = [s["label"] for s in item.image_scores or [] if s.get("verdict") in ("REVIEW", "FLAG")]
    if item.screen_decided_by == "known image" and matched:
        return matched[0]
    if item.screen_decided_by == "image-level head" and called:
        return called[0]
    return item.top_label or (called[0] if called else "") or (matched[0] if matched else "")


def after_decision(session: Session, item: Item, action: str, reviewer: str,
                   banking: Banking | None) -> tuple[dict | None, str]:
    """Bank (or not) what `action` decided, inside the decision's transaction: (the record for the
    audit row's `after`, a sentence for its note, empty unless a confirm was not banked)."""
    if action == "reject" or item.outcome == REJECTED:
        return release(session, item, reviewer), ""
    if banking is None:
        return None, ""
    fp = banking.fingerprint
    if fp.hash is not None:
        item.pdq_hash = fp.hash
    if not fp.usable:
        return {"bank": banking.bank, "added": False, "why": fp.why_not}, f"{NOTE_PREFIX} not added, {fp.why_not}"
    entry = EntryInput(fp.hash, deciding_label(item, action), reference_id=item.listing_id or item.request_id,
                       quality=fp.quality, embedding=item.embedding, embedding_model=item.embedding_model or "")
    entry_id, added = add_in(session.connection(), banking.bank, entry, reviewer, exist_ok=True)
    record = {"bank": banking.bank, "hash": fp.hash, "entry": entry_id, "label": entry.label, "added": added}
    if added or _other_holder(session, item, banking.bank, fp.hash) is not None:
        item.banked_in = banking.bank  # ours, or shared with another confirmed item of the same photo
    else:
        record["why"] = "the bank already held it, added from outside the workbench: left as it is"
    return record, ""


def release(session: Session, item: Item, reviewer: str) -> dict | None:
    """Take back the entry this item stood behind (an undo or a reject): tombstoned unless another
    confirmed item of the same photo still stands behind it. None when it stood behind nothing."""
    bank, code = item.banked_in, item.pdq_hash
    if not bank or not code:
        return None
    item.banked_in = None
    other = _other_holder(session, item, bank, code)
    if other is not None:
        return {"bank": bank, "hash": code, "removed": False, "why": f"item {other} stands behind the same photo"}
    entry_id = remove_in(session.connection(), bank, code, reviewer, missing_ok=True)
    return {"bank": bank, "hash": code, "entry": entry_id, "removed": entry_id is not None}


def _other_holder(session: Session, item: Item, bank: str, code: str) -> int | None:
    return session.scalar(select(Item.id).where(Item.pdq_hash == code, Item.banked_in == bank, Item.id != item.id).limit(1))
