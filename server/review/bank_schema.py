"""The hash banks' tables, beside the review queue's (same Base, same database; migration 0004).

    banks          a named list with its action (FLAG or REVIEW) and owning organisation
    bank_entries   one PDQ hash in one bank, unique per (bank, hash); removal is a tombstone
                   (removed_at), so a replica that polls by seq sees it and drops the entry;
                   optionally the photo's embedding beside it (migration 0006)
    bank_counter   one row: the last seq handed out

`seq` orders every change to an entry across all banks (add, removal, re-add): a change takes the next
value from bank_counter. Taking it is an UPDATE of that one row, which holds the row's lock until the
transaction ends, so changes commit in seq order and a replica polling "seq > N" never skips one
that commits late (an autoincrement id can: on PostgreSQL a lower id may commit after a higher one).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.review.schema import Base

KNOWN_IMAGE = "known_trafficking_image"
"""The label of an entry that is a known trafficking photo whatever it shows (no taxonomy class)."""


class Bank(Base):
    __tablename__ = "banks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    action: Mapped[str] = mapped_column(String(16))
    organisation: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BankEntryRow(Base):
    __tablename__ = "bank_entries"
    __table_args__ = (
        UniqueConstraint("bank_id", "hash", name="uq_bank_entries_bank_hash"),
        Index("ix_bank_entries_seq", "seq", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id"))
    hash: Mapped[str] = mapped_column(String(64))
    """64 lowercase hex characters, threatexchange's PDQ signal."""
    quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """PDQ quality, 50-100; NULL when a partner's list did not say."""
    label: Mapped[str] = mapped_column(String(64))
    organisation: Mapped[str] = mapped_column(String(200))
    reference_id: Mapped[str] = mapped_column(String(200), default="")
    """A listing id or a case number, in the owning organisation's terms."""
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    added_by: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    removed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The photo's embedding (server.core.embedding.pack), the second signal for crops and frames PDQ misses."""
    embedding_model: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """The name of the model that made `embedding` (EmbeddingSpec.name); "" without one."""


class BankCounter(Base):
    __tablename__ = "bank_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
