"""Known-image matching: every banked PDQ hash in memory, in a faiss binary index, asked "which entries
are within 31 bits of this image's 8 dihedral hashes?" on every screen.

    BankSource       where entries come from (the review database's bank store); the core never reads SQL
    BankSnapshot     one immutable state: the entries up to change `seq`, their indexes, the banks' actions
    BankMatcher      holds the live snapshot; `refresh` (or its background thread) takes the changes since
                     the snapshot's seq, builds the next snapshot aside and swaps it in by one assignment

Replicas catch up by polling: every add, removal and re-add of an entry gets the next `seq` of its
database, and a refresh asks for the changes after the seq it has (poll by id). New entries reach
matching within the poll interval plus the refresh's own time, with no restart; a reader keeps the
snapshot it started with, so it never sees an index half built or half swapped.

A snapshot has two segments so that a refresh costs what changed, not the bank's size:
- base: most entries, in the index `hash_index.kind_for` picks for its size; rebuilt only when
  the delta has grown past `compact_at` (or a tenth of the base);
- delta: the entries added or changed since the base was built, in a small flat index rebuilt on
  every refresh that brought changes.
A base row whose entry was removed or changed since is "dead" (its entry id is in `dead`) and is
skipped; expired entries are skipped at match time and dropped at the next compaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from server.core import hash_index
from server.core.bank_rows import BankEntry, Names, Rows, timestamp
from server.core.pdq import HASH_BYTES, MATCH_DISTANCE, MIN_QUALITY

log = logging.getLogger(__name__)

FLAG, REVIEW = "FLAG", "REVIEW"
BANK_ACTIONS = (FLAG, REVIEW)


class BankSource(Protocol):
    def entries_since(self, after_seq: int, limit: int) -> Sequence[BankEntry]:
        """The changes with seq > after_seq, in seq order, at most `limit`."""

    def bank_actions(self) -> Mapping[str, str]:
        """Each bank's action, FLAG or REVIEW."""


@dataclass(frozen=True)
class Match:
    bank: str
    entry_id: int
    label: str
    distance: int
    reference_id: str
    added_at: datetime
    action: str
    """The bank's action, FLAG or REVIEW: what the verdict is raised to."""


@dataclass(frozen=True)
class Segment:
    rows: Rows
    index: object = field(repr=False)

    @classmethod
    def build(cls, rows: Rows, kind: str | None = None) -> Segment:
        return cls(rows, hash_index.build(rows.codes, kind))


@dataclass(frozen=True)
class BankSnapshot:
    seq: int
    base: Segment
    delta: Segment
    dead: frozenset[int]
    banks: tuple[str, ...]
    labels: tuple[str, ...]
    actions: Mapping[str, str]

    def __len__(self) -> int:
        """Entries that count (not removed; expired ones included until the next compaction)."""
        return len(self.base.rows) - len(self.dead) + len(self.delta.rows)

    def match(self, codes: np.ndarray, now: float | None = None, max_distance: int = MATCH_DISTANCE) -> list[Match]:
        """The entries within `max_distance` of any of `codes` ((k, 32) uint8, e.g. 8 dihedral
        variants), nearest first, each once at its smallest distance."""
        now = time.time() if now is None else now
        best: dict[int, tuple[int, Rows, int]] = {}
        for segment, skip_dead in ((self.base, True), (self.delta, False)):
            _, rows, distances = hash_index.within(segment.index, codes, max_distance)
            for row, dist in zip(rows.tolist(), distances.tolist()):
                entry_id = int(segment.rows.entry_ids[row])
                if skip_dead and entry_id in self.dead or segment.rows.expires_at[row] <= now:
                    continue
                if entry_id not in best or dist < best[entry_id][0]:
                    best[entry_id] = (dist, segment.rows, row)
        matches = [self._match(rows, row, dist) for dist, rows, row in best.values()]
        return sorted(matches, key=lambda m: (m.distance, m.bank, m.entry_id))

    def sizes(self, now: float | None = None) -> dict[str, int]:
        """Entries per bank that would match now (GetModelInfo's bank list)."""
        now = time.time() if now is None else now
        counts = np.zeros(len(self.banks), dtype=np.int64)
        for rows, alive in ((self.base.rows, _not_in(self.base.rows.entry_ids, self.dead)),
                            (self.delta.rows, np.ones(len(self.delta.rows), dtype=bool))):
            keep = alive & (rows.expires_at > now)
            counts += np.bincount(rows.banks[keep], minlength=len(self.banks))[:len(self.banks)]
        sizes = {bank: 0 for bank in self.actions}
        sizes.update({name: int(n) for name, n in zip(self.banks, counts) if n or name in sizes})
        return sizes

    def _match(self, rows: Rows, row: int, dist: int) -> Match:
        bank = self.banks[rows.banks[row]]
        return Match(bank=bank, entry_id=int(rows.entry_ids[row]), label=self.labels[rows.labels[row]], distance=int(dist),
                     reference_id=rows.references[row], added_at=timestamp(float(rows.added_at[row])),
                     action=self.actions.get(bank, REVIEW))


def _not_in(entry_ids: np.ndarray, dead: frozenset[int]) -> np.ndarray:
    if not dead:
        return np.ones(len(entry_ids), dtype=bool)
    return ~np.isin(entry_ids, np.fromiter(dead, dtype=np.int64, count=len(dead)))


class BankMatcher:
    """The live snapshot of one server process, and the one thread that replaces it.

    `match` runs on any thread at any time; `refresh` runs on one thread at a time (the background
    thread `start` runs, or a caller's: a lock keeps two from interleaving)."""

    def __init__(self, source: BankSource, page: int = 50_000, compact_at: int = 20_000) -> None:
        self.source = source
        self.page = page
        self.compact_at = compact_at
        self._banks, self._labels = Names(), Names()
        self._base_rows = Rows.empty()
        self._dead: set[int] = set()
        self._delta: dict[int, BankEntry] = {}
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        empty = Segment.build(self._base_rows)
        self._snapshot = BankSnapshot(0, empty, empty, frozenset(), (), (), {})
        self.last_refresh_s = 0.0

    @property
    def snapshot(self) -> BankSnapshot:
        return self._snapshot

    def match(self, variants: np.ndarray | Sequence[bytes], quality: int = 100, now: float | None = None) -> list[Match]:
        """The banked entries that match an image's dihedral hashes; none below PDQ's quality floor."""
        if quality < MIN_QUALITY:
            return []
        if not isinstance(variants, np.ndarray):
            variants = np.frombuffer(b"".join(variants), dtype=np.uint8).reshape(-1, HASH_BYTES)
        return self._snapshot.match(variants, now)

    def refresh(self) -> int:
        """Apply every change since the snapshot's seq and swap the new snapshot in; the number of changes."""
        with self._refresh_lock:
            started = time.monotonic()
            seq, changes, base_changed = self._snapshot.seq, 0, False
            actions = dict(self.source.bank_actions())
            while True:
                page = self.source.entries_since(seq, self.page)
                in_base = self._base_rows.contains(np.array([e.entry_id for e in page], dtype=np.int64))
                for entry, was_in_base in zip(page, in_base.tolist()):
                    self._apply(entry, was_in_base)
                    seq = max(seq, entry.seq)
                changes += len(page)
                if self._should_compact():
                    self._compact()
                    base_changed = True
                if len(page) < self.page:
                    break
            old = self._snapshot
            if not changes and actions == dict(old.actions):
                return 0
            base = Segment.build(self._base_rows) if base_changed else old.base
            delta_rows = Rows.of(list(self._delta.values()), self._banks, self._labels)
            delta = Segment.build(delta_rows, hash_index.FLAT) if changes or base_changed else old.delta
            self._snapshot = BankSnapshot(seq, base, delta, frozenset(self._dead), self._banks.names, self._labels.names,
                                          actions)
            self.last_refresh_s = time.monotonic() - started
            return changes

    def start(self, interval_s: float = 5.0) -> None:
        """Refresh now, then every `interval_s` on a daemon thread; a failed refresh is logged and retried."""
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, args=(interval_s,), name="bank-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _poll(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.refresh()
            except Exception:  # the database away for a moment must not end matching: keep the snapshot
                log.exception("refreshing the hash banks failed; matching goes on with the entries it has")

    def _apply(self, entry: BankEntry, in_base: bool) -> None:
        self._delta.pop(entry.entry_id, None)
        if in_base:
            self._dead.add(entry.entry_id)
        if not entry.removed:
            self._delta[entry.entry_id] = entry

    def _should_compact(self) -> bool:
        base = len(self._base_rows)
        return len(self._delta) > max(self.compact_at, base // 10) or len(self._dead) > max(self.compact_at, base // 10)

    def _compact(self) -> None:
        now = time.time()
        keep = _not_in(self._base_rows.entry_ids, frozenset(self._dead)) & (self._base_rows.expires_at > now)
        fresh = [e for e in self._delta.values() if e.expires_at is None or e.expires_at.timestamp() > now]
        self._base_rows = self._base_rows.take(keep).merge(Rows.of(fresh, self._banks, self._labels))
        self._dead.clear()
        self._delta.clear()
