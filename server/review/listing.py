"""The list view's filters and paging: read from a query string with a clear InvalidInput for
anything unknown, turned into SQL conditions over the queue index. No protocol here.

"Model version at least v2" compares versions naturally (v10 after v9): the store has few distinct
versions, so they are read (from their index) and compared here, and the query asks for those.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, and_, or_, true

from server.core.errors import InvalidInput
from server.core.taxonomy import TAXONOMY
from server.review.schema import DECIDED, QUEUED, Item

STATES = ("queued", "waiting", "claimed", "decided", "all")
"""queued: the whole queue; waiting: nobody holds it; claimed: a reviewer holds it now."""
VERDICT_PRIORITY = {"FLAG": 3, "REVIEW": 2}
MAX_LIMIT = 500
FIELDS = ("verdict", "class", "state", "min_version", "offset", "limit")


def version_key(version: str) -> tuple:
    """Natural order: digits as numbers, so that v10 comes after v9 and 2024-10 after 2024-9."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.findall(r"\d+|\D+", version))


def _integer(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer, not {raw[:20]!r}") from None


@dataclass(frozen=True)
class Filters:
    verdict: str = ""
    label: str = ""
    state: str = "queued"
    min_version: str = ""
    offset: int = 0
    limit: int = 50

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Filters:
        """The filters a query string asks for; an empty value means no filter."""
        unknown = sorted(set(params) - set(FIELDS))
        if unknown:
            raise InvalidInput(f"unknown parameter {unknown[0][:40]!r}; known: {', '.join(FIELDS)}")
        verdict, label = params.get("verdict", ""), params.get("class", "")
        state, min_version = params.get("state", "") or "queued", params.get("min_version", "").strip()
        if verdict and verdict not in VERDICT_PRIORITY:
            raise InvalidInput(f"verdict {verdict[:20]!r} is not one of {', '.join(VERDICT_PRIORITY)}")
        if label and label not in {c.label for c in TAXONOMY}:
            raise InvalidInput(f"class {label[:64]!r} is not one of {', '.join(c.label for c in TAXONOMY)}")
        if state not in STATES:
            raise InvalidInput(f"state {state[:20]!r} is not one of {', '.join(STATES)}")
        if len(min_version) > 100:
            raise InvalidInput("min_version is longer than 100 characters")
        offset, limit = _integer(params, "offset", 0), _integer(params, "limit", 50)
        if offset < 0:
            raise InvalidInput(f"offset must be 0 or more, not {offset}")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be 1 to {MAX_LIMIT}, not {limit}")
        return cls(verdict, label, state, min_version, offset, limit)

    def query(self, **changes) -> str:
        """This view's query string, with `changes` (for the page's links: next, previous)."""
        f = replace(self, **changes)
        pairs = {"verdict": f.verdict, "class": f.label, "state": f.state, "min_version": f.min_version,
                 "offset": f.offset or "", "limit": f.limit if f.limit != 50 else ""}
        return urlencode({k: v for k, v in pairs.items() if v != ""})

    def condition(self, moment: datetime, versions: list[str]) -> ColumnElement[bool]:
        """The WHERE clause; `versions` are the store's distinct model versions."""
        held = and_(Item.claimed_by.is_not(None), Item.claim_expires > moment)
        parts = {
            "queued": [Item.state == QUEUED], "waiting": [Item.state == QUEUED, or_(Item.claimed_by.is_(None), Item.claim_expires <= moment)],
            "claimed": [Item.state == QUEUED, held], "decided": [Item.state == DECIDED], "all": [],
        }[self.state]
        if self.verdict:
            parts.append(Item.priority == VERDICT_PRIORITY[self.verdict])  # the queue index's column for the verdict
        if self.label:
            parts.append(Item.top_label == self.label)
        if self.min_version:
            bound = version_key(self.min_version)
            parts.append(Item.model_version.in_([v for v in versions if version_key(v) >= bound]))
        return and_(true(), *parts)
