"""Class mapping: a source's class names onto our taxonomy.

A mapping file is YAML, one line per source class:

    tiger: tiger_parts
    Snake: live_reptile
    cat: background        # look-alike: boxes dropped, image kept as a background image

A source name that is already a taxonomy label maps to itself. Any other name that the mapping
does not cover is refused, all of them listed at once, before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from server.core.taxonomy import LABELS, by_label

BACKGROUND = "background"


class MappingError(ValueError):
    pass


class ClassMapping:
    def __init__(self, table: dict[str, str] | None = None) -> None:
        self.table = dict(table or {})
        bad = {k: v for k, v in self.table.items() if v != BACKGROUND and v not in LABELS}
        if bad:
            raise MappingError(
                "mapping targets that are not taxonomy labels: "
                + ", ".join(f"{k} -> {v}" for k, v in bad.items())
                + f" (use one of {', '.join(LABELS)} or {BACKGROUND})"
            )

    @classmethod
    def load(cls, path: Path | None) -> ClassMapping:
        if path is None:
            return cls()
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise MappingError(f"{path}: expected 'source name: taxonomy label' lines")
        return cls({str(k): str(v) for k, v in raw.items()})

    def target(self, name: str) -> str | None:
        """Taxonomy label or BACKGROUND for `name`; None when unmapped."""
        if name in self.table:
            return self.table[name]
        return name if name in LABELS else None

    def check_covers(self, names: Iterable[str], source: str) -> None:
        missing = sorted({n for n in names if self.target(n) is None})
        if missing:
            raise MappingError(
                f"{source}: class names with no mapping: {', '.join(missing)}. "
                f"Add them to the mapping file as 'name: <{'|'.join(LABELS)}|{BACKGROUND}>'"
            )

    def class_id(self, name: str) -> int | None:
        """Taxonomy id for `name`, or None when it maps to background."""
        target = self.target(name)
        if target is None:
            raise MappingError(f"class name {name!r} has no mapping")
        return None if target == BACKGROUND else by_label(target).id
