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


def open_banks(url: str) -> BankMatcher:
    """A matcher over the banks at `url`, filled once; `start` it to keep it fresh. A database that
    cannot be read or holds no bank tables is refused at start, with the reason."""
    try:
        engine = open_engine(url)
        missing = sorted(set(BANK_TABLES) - set(inspect(engine).get_table_names()))
    except (SQLAlchemyError, ValueError) as exc:
        raise ModelError(f"cannot read the banks database {url!r}: {exc}") from exc
    if missing:
        raise ModelError(f"the banks database {url!r} has no tables {', '.join(missing)}: start wildscreen-review on it "
                         "once (it creates them), or check --banks-database-url")
    matcher = BankMatcher(BankStore(engine))
    changes = matcher.refresh()
    log.info("hash banks loaded", extra={"fields": {"entries": len(matcher.snapshot), "changes": changes,
                                                    "banks": matcher.snapshot.sizes()}})
    return matcher
