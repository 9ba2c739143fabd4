"""Known-image matching: every banked PDQ hash in memory, in a faiss binary index, asked "which entries
are within 31 bits of this image's 8 dihedral hashes?" on every screen; and, where the served model has
an embedding signal (server.core.embedding), every banked embedding of that model in a faiss vector
index, asked "which entries are at least the threshold similar to this image?". A match by either
signal counts; the answer says which signal matched, with the PDQ distance and the similarity.

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

from server.core import hash_index, vector_index
from server.core.bank_rows import BankEntry, Names, Rows, timestamp
from server.core.embedding import SIGNAL_EMBEDDING, SIGNAL_PDQ
from server.core.pdq import HASH_BYTES, MATCH_DISTANCE, MIN_QUALITY

log = logging.getLogger(__name__)

FLAG, REVIEW = "FLAG", "REVIEW"
BANK_ACTIONS = (FLAG, REVIEW)
CANDIDATE_MARGIN = 0.02
"""How far below the threshold the vector index is asked (its 8-bit codes are approximate)."""


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
    """What the verdict is raised to: the bank's action (FLAG or REVIEW) for a PDQ match; REVIEW for a
    match by the embedding alone, which near photos of one series can reach (weights/v3.md): a person
    looks before anything is flagged on its word."""
    signal: str = SIGNAL_PDQ
    """Which signal matched: "pdq", "embedding" or "pdq+embedding"."""
    similarity: float | None = None
    """Cosine similarity of the embeddings, where both have one of the served model."""


@dataclass(frozen=True)
class Segment:
    rows: Rows
    index: object = field(repr=False)
    vectors: object = field(repr=False, default=None)
    """The vector index over `rows.vectors` (None without any), and the row of each of its vectors."""
    vector_rows: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def build(cls, rows: Rows, kind: str | None = None) -> Segment:
        with_vector = np.flatnonzero(rows.vector_of >= 0)
        vectors = vector_index.build(rows.vectors, vector_index.FLAT if kind == hash_index.FLAT else None) \
            if len(with_vector) else None
        return cls(rows, hash_index.build(rows.codes, kind), vectors, with_vector)


@dataclass(frozen=True)
class BankSnapshot:
    seq: int
    base: Segment
    delta: Segment
    dead: frozenset[int]
    banks: tuple[str, ...]
    labels: tuple[str, ...]
    actions: Mapping[str, str]
    embedding_model: str = ""
    """Whose embeddings the segments hold ("" for none: PDQ alone)."""
    threshold: float = 1.0

    def __len__(self) -> int:
        """Entries that count (not removed; expired ones included until the next compaction)."""
        return len(self.base.rows) - len(self.dead) + len(self.delta.rows)

    def match(self, codes: np.ndarray, vector: np.ndarray | None = None, now: float | None = None,
              max_distance: int = MATCH_DISTANCE) -> list[Match]:
        """The entries within `max_distance` of any of `codes` ((k, 32) uint8, e.g. 8 dihedral
        variants) or, given the image's `vector` of this snapshot's embedding model, at least the
        threshold similar to it; PDQ matches first, nearest first, each entry once. The indexes
        propose candidates (IVF's 8-bit codes are approximate, so a little below the threshold);
        the exact distance and similarity decide. A `max_distance` of -1 leaves PDQ out."""
        now = time.time() if now is None else now
        found: dict[int, tuple[Segment, int]] = {}
        for segment, skip_dead in ((self.base, True), (self.delta, False)):
            rows = hash_index.within(segment.index, codes, max_distance)[1] if max_distance >= 0 else np.zeros(0, np.int64)
            if vector is not None and segment.vectors is not None:
                _, vrows, _ = vector_index.at_least(segment.vectors, vector[None, :], self.threshold - CANDIDATE_MARGIN)
                rows = np.concatenate([rows, segment.vector_rows[vrows]])
            for row in set(rows.tolist()):
                entry_id = int(segment.rows.entry_ids[row])
                if not (skip_dead and entry_id in self.dead or segment.rows.expires_at[row] <= now):
                    found[entry_id] = (segment, row)
        matches = [m for segment, row in found.values() if (m := self._match(segment, row, codes, vector, max_distance))]
        return sorted(matches, key=lambda m: (m.signal == SIGNAL_EMBEDDING, m.distance, -(m.similarity or 0.0), m.bank,
                                              m.entry_id))

    def sizes(self, now: float | None = None, with_embedding: bool = False) -> dict[str, int]:
        """Entries per bank that would match now (GetModelInfo's bank list); `with_embedding`: only
        those that carry an embedding of the snapshot's model."""
        now = time.time() if now is None else now
        counts = np.zeros(len(self.banks), dtype=np.int64)
        for rows, alive in ((self.base.rows, _not_in(self.base.rows.entry_ids, self.dead)),
                            (self.delta.rows, np.ones(len(self.delta.rows), dtype=bool))):
            keep = alive & (rows.expires_at > now) & ((rows.vector_of >= 0) if with_embedding else True)
            counts += np.bincount(rows.banks[keep], minlength=len(self.banks))[:len(self.banks)]
        sizes = {bank: 0 for bank in self.actions}
        sizes.update({name: int(n) for name, n in zip(self.banks, counts) if n or name in sizes})
        return sizes

    def _match(self, segment: Segment, row: int, codes: np.ndarray, vector: np.ndarray | None,
               max_distance: int) -> Match | None:
        rows = segment.rows
        bank = self.banks[rows.banks[row]]
        distance = int(np.unpackbits(codes ^ rows.codes[row][None, :], axis=1).sum(axis=1).min()) if len(codes) else 256
        at = int(rows.vector_of[row])
        similarity = float(rows.vectors[at].astype(np.float32) @ vector) if vector is not None and at >= 0 else None
        signals = [name for name, hit in ((SIGNAL_PDQ, distance <= max_distance),
                                          (SIGNAL_EMBEDDING, similarity is not None and similarity >= self.threshold)) if hit]
        if not signals:
            return None
        return Match(bank=bank, entry_id=int(rows.entry_ids[row]), label=self.labels[rows.labels[row]], distance=distance,
                     reference_id=rows.references[row], added_at=timestamp(float(rows.added_at[row])),
                     action=self.actions.get(bank, REVIEW) if SIGNAL_PDQ in signals else REVIEW, signal="+".join(signals),
                     similarity=None if similarity is None else round(similarity, 4))


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
        self._embedding: tuple[str, int, float] = ("", 0, 1.0)
        """The served model's embedding (name, dim, threshold): whose vectors are kept; ("", 0, 1.0): none."""
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reset()
        self._snapshot = self._publish(0, self._base_segment())
        self.last_refresh_s = 0.0

    @property
    def snapshot(self) -> BankSnapshot:
        return self._snapshot

    def match(self, variants: np.ndarray | Sequence[bytes], quality: int = 100, vector: np.ndarray | None = None,
              embedding_model: str = "", now: float | None = None) -> list[Match]:
        """The banked entries that match an image: by its dihedral hashes (not below PDQ's quality
        floor) or by its embedding `vector`, when that is of the snapshot's `embedding_model`."""
        if not isinstance(variants, np.ndarray):
            variants = np.frombuffer(b"".join(variants), dtype=np.uint8).reshape(-1, HASH_BYTES)
        snapshot = self._snapshot
        if vector is not None and (not embedding_model or embedding_model != snapshot.embedding_model):
            vector = None
        if quality < MIN_QUALITY and vector is None:
            return []
        return snapshot.match(variants, vector, now, MATCH_DISTANCE if quality >= MIN_QUALITY else -1)

    def use_embedding(self, name: str, dim: int, threshold: float) -> None:
        """Keep the embeddings of `name` (the served model's; "" for none) from now on. A change of
        model reloads every entry (a new model's vectors were never in memory); until that is done
        the current snapshot goes on matching by PDQ and its own vectors."""
        with self._refresh_lock:
            if self._embedding == (name, dim, threshold):
                return
            loaded = self._applied_seq > 0
            self._embedding = (name, dim, threshold)
            self._reset()
        if loaded:
            self.refresh()

    def refresh(self) -> int:
        """Apply every change since the last refresh and swap the new snapshot in; the number of changes."""
        with self._refresh_lock:
            started = time.monotonic()
            seq, changes, base_changed = self._applied_seq, 0, self._base_stale
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
            self._applied_seq = seq
            old = self._snapshot
            if not changes and not base_changed and actions == dict(old.actions):
                return 0
            base = self._base_segment() if base_changed else old.base
            self._base_stale = False
            self._snapshot = self._publish(seq, base, actions)
            self.last_refresh_s = time.monotonic() - started
            return changes

    def _reset(self) -> None:
        """Forget every entry: the next refresh reads them all again from seq 0."""
        self._banks, self._labels = Names(), Names()
        self._base_rows = Rows.empty(self._embedding[1])
        self._dead: set[int] = set()
        self._delta: dict[int, BankEntry] = {}
        self._applied_seq = 0
        self._base_stale = True

    def _rows(self, entries: Sequence[BankEntry]) -> Rows:
        name, dim, _ = self._embedding
        return Rows.of(entries, self._banks, self._labels, name, dim)

    def _base_segment(self) -> Segment:
        return Segment.build(self._base_rows)

    def _publish(self, seq: int, base: Segment, actions: Mapping[str, str] | None = None) -> BankSnapshot:
        name, _, threshold = self._embedding
        delta = Segment.build(self._rows(list(self._delta.values())), hash_index.FLAT)
        return BankSnapshot(seq, base, delta, frozenset(self._dead), self._banks.names, self._labels.names,
                            dict(actions or {}), name, threshold)

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
        self._base_rows = self._base_rows.take(keep).merge(self._rows(fresh))
        self._dead.clear()
        self._delta.clear()
