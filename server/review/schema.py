"""The review database's tables. Alembic's migrations (server/review/migrations) create and change
them; this module is what the code reads and writes through.

Queue order is FLAG before REVIEW, then the strongest find first: `priority` and `top_confidence`
are stored at intake so that the next item is one index scan, also with 100k items queued.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

QUEUED, DECIDED = "queued", "decided"
ACTIONS = ("confirm", "reject", "fix", "skip")
DECISIONS = ("confirm", "reject", "fix")
"""The actions that decide an item (and that its reviewer may undo); skip only hands it back."""
UNDO = "undo"
REASONS = {"not_wildlife": "not wildlife", "legal_with_papers": "legal or antique, with papers",
           "duplicate": "duplicate", "other": "other (the note says why)"}
"""Why a reviewer rejected an item: kept in the export (groups.csv) and in the stats."""


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("image_sha256", "request_id", name="uq_items_image_request"),
        Index("ix_items_claimed_by", "claimed_by"),
        Index("ix_items_decided_at", "decided_at"),
        Index("uq_items_image_key", "image_key", unique=True),
        Index("ix_items_listing", "listing_id"),
        Index("ix_items_model_version", "model_version"),
        Index("ix_items_pdq_hash", "pdq_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_sha256: Mapped[str] = mapped_column(String(64))
    image_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The image's sha256 on the one item that holds that image (unique): the same photo from the
    server's feed and from the CLI is one item. NULL on duplicates kept from before migration 0003."""
    image_file: Mapped[str] = mapped_column(String(200))
    """Relative to the data dir's images/: the upright image as the reviewer sees it."""
    source_path: Mapped[str] = mapped_column(Text, default="")
    """Where the submitter had the image (a path or URL), for the record."""
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(200))
    listing_id: Mapped[str] = mapped_column(String(200))
    verdict: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    top_confidence: Mapped[float] = mapped_column(Float)
    top_label: Mapped[str] = mapped_column(String(64))
    detections: Mapped[list] = mapped_column(JSON)
    thresholds: Mapped[list] = mapped_column(JSON)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(100))
    model_sha256: Mapped[str] = mapped_column(String(64))
    arrived_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claim_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    final_boxes: Mapped[list | None] = mapped_column(JSON, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """Why it was rejected, one of REASONS (NULL: not rejected, or rejected through the API without one)."""
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """What the decision says about the model's class (server.review.outcomes), stored for the stats."""
    relabelled_to: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # What the screening result said beyond the boxes (migration 0005; NULL on older items).
    matches: Mapped[list | None] = mapped_column(JSON, nullable=True)
    """Known-image matches (server.review.intake._matches): banked photos this image is a copy of."""
    screen_decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The result's `decided_by` ("known image", "detector", "image-level head"); not the reviewer (decided_by)."""
    image_scores: Mapped[list | None] = mapped_column(JSON, nullable=True)
    image_thresholds: Mapped[list | None] = mapped_column(JSON, nullable=True)
    head: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    """The image-level head's ModelRef (name, version, sha256)."""
    pdq_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The photo's PDQ hash (hex), computed when a decision first needed it (server.review.own_bank)."""
    banked_in: Mapped[str | None] = mapped_column(String(100), nullable=True)
    """The own bank whose entry of `pdq_hash` this item's confirm or fix stands behind; NULL otherwise."""
    # The result's embedding (migration 0006; NULL and "" on older items and results without one).
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """server.core.embedding.pack of the photo's embedding: banked beside its PDQ hash on a confirm."""
    embedding_model: Mapped[str] = mapped_column(String(64), default="", server_default="")


class Decision(Base):
    """The audit log: every action on an item, with what it was before and after."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_item", "item_id"), Index("ix_decisions_reviewer", "reviewer", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    reviewer: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(16))
    before: Mapped[dict] = mapped_column(JSON)
    after: Mapped[dict] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")


class Reviewer(Base):
    __tablename__ = "reviewers"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# In queue order, directions included: the next item is the index's first entry, a page is a range
# of it, and the counts are read from it alone (migration 0002; 0001 had it all ascending, which
# made SQLite sort the whole queue for each page).
Index("ix_items_queue", Item.state, Item.priority.desc(), Item.top_confidence.desc(), Item.id)
