"""The gRPC edge's known-image banks: the review database's bank tables, read (never migrated:
the review service owns that database), polled in the background by the core's `BankMatcher`."""

from __future__ import annotations

import logging

from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from server.core.errors import ModelError
from server.core.matching import BankMatcher
from server.review.banks import BankStore
from server.review.database import open_engine

log = logging.getLogger(__name__)
BANK_TABLES = ("banks", "bank_entries")
ENTRY_COLUMNS = ("embedding", "embedding_model")
"""Columns of migration 0006 the matcher reads: a database not migrated yet is refused with the fix."""


def open_banks(url: str) -> BankMatcher:
    """A matcher over the banks at `url`, empty until `start` (after the model is loaded, so that the
    first fill keeps the served model's embeddings: one load, not two). A database that cannot be
    read, holds no bank tables or is not migrated yet is refused at start, with the reason."""
    try:
        engine = open_engine(url)
        inspector = inspect(engine)
        missing = sorted(set(BANK_TABLES) - set(inspector.get_table_names()))
        columns = set() if missing else {c["name"] for c in inspector.get_columns("bank_entries")}
    except (SQLAlchemyError, ValueError) as exc:
        raise ModelError(f"cannot read the banks database {url!r}: {exc}") from exc
    if missing:
        raise ModelError(f"the banks database {url!r} has no tables {', '.join(missing)}: start wildscreen-review on it "
                         "once (it creates them), or check --banks-database-url")
    if not set(ENTRY_COLUMNS) <= columns:
        raise ModelError(f"the banks database {url!r} is from an older wildscreen-review: start the new one on it once "
                         "(it migrates the tables), then this server")
    return BankMatcher(BankStore(engine))


def log_banks(matcher: BankMatcher) -> None:
    snapshot = matcher.snapshot
    log.info("hash banks loaded", extra={"fields": {"entries": len(snapshot), "banks": snapshot.sizes(),
                                                    "with_embedding": snapshot.sizes(with_embedding=True),
                                                    "embedding": snapshot.embedding_model or "none (PDQ alone)",
                                                    "load_s": round(matcher.last_refresh_s, 1)}})
