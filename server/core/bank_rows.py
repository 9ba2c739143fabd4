"""Bank entries as columns: what the matcher keeps in memory for every banked hash.

A million entries as Python objects would cost a few hundred MB; as numpy columns they cost about
60 bytes an entry beside the faiss index: the code (32 bytes), entry id, bank and label (as small
ints into name tables), added and expiry times, and the reference id in one UTF-8 buffer with offsets.
Entries with an embedding of the matcher's model also keep it (`vectors`, 2 bytes a number; the
others' `vector_of` is -1). Columns are immutable: `take` and `merge` return new ones, so a published
snapshot never changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from server.core.embedding import unpack
from server.core.errors import InvalidInput
from server.core.pdq import HASH_BYTES

NEVER = np.inf
"""expires_at of an entry that does not expire."""


@dataclass(frozen=True)
class BankEntry:
    """One entry as a source hands it to the matcher: its state after its latest change.

    `seq` orders changes (adds, removals, re-adds) across all banks: a replica that has applied
    every change up to seq N asks for the ones after N. A removed entry arrives as `removed=True`."""

    seq: int
    entry_id: int
    bank: str
    code: bytes
    label: str
    reference_id: str
    added_at: datetime
    expires_at: datetime | None = None
    removed: bool = False
    embedding: bytes | None = None
    """The photo's embedding (server.core.embedding.pack), when the entry has one."""
    embedding_model: str = ""
    """Which embedding that is (EmbeddingSpec.name); a server matches only its own."""


class Names:
    """Interned names (banks, labels) as small ints; append-only, so old columns stay valid."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self.names: tuple[str, ...] = ()

    def code(self, name: str) -> int:
        found = self._codes.get(name)
        if found is None:
            found = self._codes[name] = len(self.names)
            self.names = (*self.names, name)
        return found


@dataclass(frozen=True)
class Texts:
    """Many short strings in one buffer: row i is buffer[offsets[i]:offsets[i + 1]]."""

    buffer: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, texts: Sequence[str]) -> Texts:
        encoded = [t.encode() for t in texts]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(np.array([len(e) for e in encoded], dtype=np.int64))
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> str:
        return self.buffer[self.offsets[row]:self.offsets[row + 1]].tobytes().decode()

    def take(self, rows: np.ndarray) -> Texts:
        starts, lengths = self.offsets[:-1][rows], np.diff(self.offsets)[rows]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths)
        gather = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - starts, lengths)
        return Texts(self.buffer[gather], offsets)

    def concat(self, other: Texts) -> Texts:
        return Texts(np.concatenate([self.buffer, other.buffer]),
                     np.concatenate([self.offsets, other.offsets[1:] + self.offsets[-1]]))


@dataclass(frozen=True)
class Rows:
    """Entries as columns, sorted by entry id (so `find` is a binary search)."""

    codes: np.ndarray        # (n, 32) uint8
    entry_ids: np.ndarray    # int64, ascending
    banks: np.ndarray        # int16 into the bank Names
    labels: np.ndarray       # int16 into the label Names
    added_at: np.ndarray     # float64, seconds since the epoch
    expires_at: np.ndarray   # float64, NEVER when it does not expire
    references: Texts
    vector_of: np.ndarray    # int64: the row's vector in `vectors`, -1 without one
    vectors: np.ndarray      # (m, dim) float16, unit length

    @classmethod
    def empty(cls, dim: int = 0) -> Rows:
        return cls.of([], Names(), Names(), "", dim)

    @classmethod
    def of(cls, entries: Sequence[BankEntry], banks: Names, labels: Names, embedding_model: str = "", dim: int = 0) -> Rows:
        """The entries as columns; their embeddings are kept when made by `embedding_model` (of `dim` numbers)."""
        entries = sorted(entries, key=lambda e: e.entry_id)
        kept, unpacked = [], []
        for i, e in enumerate(entries):
            vector = _vector_of(e, embedding_model, dim)
            if vector is not None:
                kept.append(i)
                unpacked.append(vector)
        vector_of = np.full(len(entries), -1, dtype=np.int64)
        vector_of[kept] = np.arange(len(kept))
        vectors = np.stack(unpacked).astype(np.float16) if kept else np.zeros((0, dim), np.float16)
        return cls(
            codes=np.frombuffer(b"".join(e.code for e in entries), dtype=np.uint8).reshape(len(entries), HASH_BYTES).copy(),
            entry_ids=np.array([e.entry_id for e in entries], dtype=np.int64),
            banks=np.array([banks.code(e.bank) for e in entries], dtype=np.int16),
            labels=np.array([labels.code(e.label) for e in entries], dtype=np.int16),
            added_at=np.array([e.added_at.timestamp() for e in entries], dtype=np.float64),
            expires_at=np.array([e.expires_at.timestamp() if e.expires_at else NEVER for e in entries], dtype=np.float64),
            references=Texts.of([e.reference_id for e in entries]), vector_of=vector_of, vectors=vectors)

    def __len__(self) -> int:
        return len(self.entry_ids)

    @property
    def nbytes(self) -> int:
        arrays = (self.codes, self.entry_ids, self.banks, self.labels, self.added_at, self.expires_at,
                  self.references.buffer, self.references.offsets, self.vector_of, self.vectors)
        return sum(a.nbytes for a in arrays)

    def contains(self, entry_ids: np.ndarray) -> np.ndarray:
        """Whether each of `entry_ids` has a row here."""
        at = np.searchsorted(self.entry_ids, entry_ids)
        at = np.minimum(at, max(len(self.entry_ids) - 1, 0))
        return (self.entry_ids[at] == entry_ids) if len(self.entry_ids) else np.zeros(len(entry_ids), dtype=bool)

    def take(self, rows: np.ndarray) -> Rows:
        """The rows at `rows` (indices or a mask), in their order."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        old = self.vector_of[rows]
        has = old >= 0
        vector_of = np.full(len(rows), -1, dtype=np.int64)
        vector_of[has] = np.arange(int(has.sum()))
        return Rows(self.codes[rows], self.entry_ids[rows], self.banks[rows], self.labels[rows], self.added_at[rows],
                    self.expires_at[rows], self.references.take(rows), vector_of, self.vectors[old[has]])

    def merge(self, other: Rows) -> Rows:
        """Both sets of rows, sorted by entry id again (the ids of the two are disjoint)."""
        joined = Rows(np.concatenate([self.codes, other.codes]), np.concatenate([self.entry_ids, other.entry_ids]),
                      np.concatenate([self.banks, other.banks]), np.concatenate([self.labels, other.labels]),
                      np.concatenate([self.added_at, other.added_at]), np.concatenate([self.expires_at, other.expires_at]),
                      self.references.concat(other.references),
                      np.concatenate([self.vector_of, np.where(other.vector_of >= 0, other.vector_of + len(self.vectors), -1)]),
                      np.concatenate([self.vectors, other.vectors]))
        order = np.argsort(joined.entry_ids, kind="stable")
        return joined.take(order)


def _vector_of(entry: BankEntry, embedding_model: str, dim: int) -> np.ndarray | None:
    """The entry's vector when it is of `embedding_model` and sound; a damaged one (written to the
    database by hand: our writers check) counts as none, so that one row cannot stop every refresh."""
    if not embedding_model or entry.embedding_model != embedding_model or entry.embedding is None:
        return None
    try:
        return unpack(entry.embedding, dim)
    except InvalidInput:
        return None


def timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)
