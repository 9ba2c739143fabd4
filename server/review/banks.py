"""Hash banks in the review database: create and list banks, add and remove entries, import a
partner's list all or nothing, read a bank for export, and hand replicas the changes since a seq.

The store is the matcher's `BankSource` (server.core.matching): `entries_since(seq)` returns the
changes after `seq`, removals included (as tombstones), and `bank_actions()` each bank's action.

Rules, the same for the command line, the workbench and an import:
- a hash is 64 hex characters (stored lowercase); quality, when given, is PDQ's 50-100 (below 50 a
  hash is too unreliable to keep); the label is a taxonomy class or "known_trafficking_image";
- an entry may carry the photo's embedding (server/core/embedding.py) with the name of the model that
  made it, both or neither: a vector without its model's name could never be compared safely;
- (bank, hash) is unique: adding a hash already there is a Conflict, importing it a duplicate
  (counted and skipped); adding or importing a removed hash brings it back with the new fields;
- an import is one transaction: an unknown bank, too many bad lines or a crash applies nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from server.core.bank_rows import BankEntry
from server.core.embedding import unpack
from server.core.errors import Conflict, InvalidInput, NotFound
from server.core.matching import BANK_ACTIONS
from server.core.pdq import MIN_QUALITY, from_hex
from server.core.taxonomy import LABELS
from server.review.bank_schema import KNOWN_IMAGE, Bank, BankCounter, BankEntryRow
from server.review.clock import aware, now

ENTRY_LABELS = (*LABELS, KNOWN_IMAGE)
IMPORT_CHUNK = 500
"""Lines looked up and inserted together (SQLite allows 32766 parameters a statement)."""
_TEXT_LIMITS = {"organisation": 200, "reference_id": 200, "added_by": 100, "embedding_model": 64}


@dataclass(frozen=True)
class EntryInput:
    """One entry to add, checked on construction (InvalidInput says what is wrong)."""

    hash: str
    label: str = KNOWN_IMAGE
    reference_id: str = ""
    organisation: str | None = None
    """None: the bank's organisation."""
    quality: int | None = None
    expires_at: datetime | None = None
    embedding: bytes | None = None
    """server.core.embedding.pack of the photo's embedding; None without one."""
    embedding_model: str = ""
    """The model that made `embedding` (EmbeddingSpec.name); "" exactly when there is no embedding."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", from_hex(self.hash).hex())
        if self.label not in ENTRY_LABELS:
            raise InvalidInput(f"unknown label {self.label!r}; labels: {', '.join(ENTRY_LABELS)}")
        if self.quality is not None and not MIN_QUALITY <= self.quality <= 100:
            raise InvalidInput(f"quality {self.quality} is outside {MIN_QUALITY}-100 (PDQ's floor for a usable hash)")
        if self.embedding is not None:
            unpack(self.embedding)  # InvalidInput unless 1 to MAX_DIM finite float16 numbers, not all zeros
        if (self.embedding is None) != (not self.embedding_model):
            raise InvalidInput("an embedding needs its model's name (embedding_model) and a model name its embedding")
        for name in ("organisation", "reference_id", "embedding_model"):
            value = getattr(self, name)
            if value is not None and len(value) > _TEXT_LIMITS[name]:
                raise InvalidInput(f"{name} is longer than {_TEXT_LIMITS[name]} characters")
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", _utc(self.expires_at))


@dataclass(frozen=True)
class BankInfo:
    name: str
    action: str
    organisation: str
    description: str
    created: datetime
    size: int
    """Entries not removed (expired ones included)."""
    embeddings: dict[str, int] = field(default_factory=dict)
    """Of those, how many carry an embedding, per model name (only comparable within one name)."""


@dataclass(frozen=True)
class StoredEntry:
    id: int
    seq: int
    bank: str
    hash: str
    quality: int | None
    label: str
    organisation: str
    reference_id: str
    added_at: datetime
    added_by: str
    expires_at: datetime | None
    removed_at: datetime | None
    embedding: bytes | None = None
    embedding_model: str = ""


@dataclass
class ImportReport:
    added: int = 0
    restored: int = 0
    """Removed entries brought back by the file."""
    duplicates: int = 0
    duplicate_lines: list[int] = field(default_factory=list)
    """The first few, for the message; `duplicates` counts them all."""
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


class ImportRefused(InvalidInput):
    """The file had more bad lines than allowed: nothing was applied."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


class BankStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str, action: str, organisation: str, description: str = "") -> BankInfo:
        name, action = name.strip(), action.upper()
        if not name or len(name) > 100:
            raise InvalidInput("a bank's name is 1 to 100 characters")
        if action not in BANK_ACTIONS:
            raise InvalidInput(f"a bank's action is {' or '.join(BANK_ACTIONS)}, not {action!r}")
        with self.engine.begin() as conn:
            if conn.execute(select(Bank.id).where(Bank.name == name)).first():
                raise Conflict(f"bank {name!r} already exists")
            conn.execute(insert(Bank).values(name=name, action=action, organisation=organisation,
                                             description=description, created=now()))
        return self.bank(name)

    def banks(self) -> list[BankInfo]:
        sizes = (select(BankEntryRow.bank_id, func.count().label("size")).where(BankEntryRow.removed_at.is_(None))
                 .group_by(BankEntryRow.bank_id).subquery())
        query = (select(Bank.name, Bank.action, Bank.organisation, Bank.description, Bank.created,
                        func.coalesce(sizes.c.size, 0).label("size"))
                 .outerjoin(sizes, sizes.c.bank_id == Bank.id).order_by(Bank.name))
        embedded = (select(Bank.name, BankEntryRow.embedding_model, func.count().label("count"))
                    .join(Bank, Bank.id == BankEntryRow.bank_id)
                    .where(BankEntryRow.removed_at.is_(None), BankEntryRow.embedding.is_not(None))
                    .group_by(Bank.name, BankEntryRow.embedding_model))
        with self.engine.connect() as conn:
            models: dict[str, dict[str, int]] = {}
            for name, model, count in conn.execute(embedded):
                models.setdefault(name, {})[model] = count
            return [BankInfo(r.name, r.action, r.organisation, r.description, aware(r.created), r.size,
                             dict(sorted(models.get(r.name, {}).items())))
                    for r in conn.execute(query)]

    def bank(self, name: str) -> BankInfo:
        for info in self.banks():
            if info.name == name:
                return info
        raise NotFound(f"no bank {name!r}; `wildscreen-review banks list` shows them")

    def bank_actions(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {name: action for name, action in conn.execute(select(Bank.name, Bank.action))}

    def add(self, bank: str, entry: EntryInput, by: str) -> StoredEntry:
        """Add one hash (or bring back a removed one); Conflict when the bank already holds it."""
        with self.engine.begin() as conn:
            entry_id, _ = add_in(conn, bank, entry, by)
        return self.entry(entry_id)

    def remove(self, bank: str, hash_hex: str, by: str) -> StoredEntry:
        """Tombstone an entry: it stops matching everywhere at the replicas' next poll."""
        with self.engine.begin() as conn:
            entry_id = remove_in(conn, bank, hash_hex, by)
        return self.entry(entry_id)

    def ensure(self, name: str, action: str, organisation: str, description: str = "") -> BankInfo:
        """The bank `name`, created with `action` if missing (two processes starting at once: one creates it)."""
        try:
            return self.bank(name)
        except NotFound:
            pass
        try:
            return self.create(name, action, organisation, description)
        except (Conflict, IntegrityError):
            return self.bank(name)

    def entry(self, entry_id: int) -> StoredEntry:
        with self.engine.connect() as conn:
            row = conn.execute(_entries_query().where(BankEntryRow.id == entry_id)).first()
        if row is None:
            raise NotFound(f"no bank entry {entry_id}")
        return _stored(row)

    def entries(self, bank: str, include_removed: bool = False) -> Iterator[StoredEntry]:
        """A bank's entries in id order, streamed (an export of a million does not hold them all)."""
        with self.engine.connect() as conn:
            bank_id, _ = _bank_row(conn, bank)
            query = _entries_query().where(BankEntryRow.bank_id == bank_id).order_by(BankEntryRow.id)
            if not include_removed:
                query = query.where(BankEntryRow.removed_at.is_(None))
            for row in conn.execution_options(yield_per=2000).execute(query):
                yield _stored(row)

    def entries_since(self, after_seq: int, limit: int) -> list[BankEntry]:
        """The changes after `after_seq` in seq order: what a replica has not applied yet."""
        query = (select(BankEntryRow.seq, BankEntryRow.id, Bank.name, BankEntryRow.hash, BankEntryRow.label,
                        BankEntryRow.reference_id, BankEntryRow.added_at, BankEntryRow.expires_at,
                        BankEntryRow.removed_at, BankEntryRow.embedding, BankEntryRow.embedding_model)
                 .join(Bank, Bank.id == BankEntryRow.bank_id).where(BankEntryRow.seq > after_seq)
                 .order_by(BankEntryRow.seq).limit(limit))
        with self.engine.connect() as conn:
            return [BankEntry(seq=r.seq, entry_id=r.id, bank=r.name, code=bytes.fromhex(r.hash), label=r.label,
                              reference_id=r.reference_id, added_at=aware(r.added_at), expires_at=aware(r.expires_at),
                              removed=r.removed_at is not None, embedding=r.embedding,
                              embedding_model=r.embedding_model) for r in conn.execute(query)]

    def import_entries(self, bank: str, lines: Iterable[tuple[int, EntryInput | str]], by: str,
                       max_bad_lines: int = 1000) -> ImportReport:
        """Load (line number, entry or what is wrong with the line) pairs in one transaction.

        Good lines load, bad ones are reported with their numbers; more than `max_bad_lines` bad lines
        (a wrong file, most likely) refuses the whole file. Duplicates are counted and skipped."""
        report = ImportReport()
        with self.engine.begin() as conn:
            bank_id, organisation = _bank_row(conn, bank)
            chunk: list[tuple[int, EntryInput]] = []
            for number, entry in lines:
                if isinstance(entry, str):
                    report.bad_lines.append((number, entry))
                    if len(report.bad_lines) > max_bad_lines:
                        raise ImportRefused(f"more than {max_bad_lines} bad lines (line {number}: {entry}); "
                                            "nothing was imported", report)
                    continue
                chunk.append((number, entry))
                if len(chunk) >= IMPORT_CHUNK:
                    _load_chunk(conn, bank_id, organisation, chunk, by, report)
                    chunk = []
            _load_chunk(conn, bank_id, organisation, chunk, by, report)
        return report


def add_in(conn: Connection, bank: str, entry: EntryInput, by: str, exist_ok: bool = False) -> tuple[int, bool]:
    """Add one hash inside the caller's transaction: (entry id, whether it was added). A hash the bank
    holds already is a Conflict, or with `exist_ok` that entry unchanged; a removed one comes back."""
    bank_id, organisation = _bank_row(conn, bank)
    seq = _next_seqs(conn, 1)  # first: the counter's lock makes two adds of one hash take turns
    existing = conn.execute(select(BankEntryRow.id, BankEntryRow.removed_at)
                            .where(BankEntryRow.bank_id == bank_id, BankEntryRow.hash == entry.hash)).first()
    values = _row_values(entry, organisation, by, seq)
    if existing is None:
        return conn.execute(insert(BankEntryRow).values(bank_id=bank_id, **values)).inserted_primary_key[0], True
    if existing.removed_at is None:
        if exist_ok:
            return existing.id, False
        raise Conflict(f"bank {bank!r} already holds {entry.hash} (entry {existing.id})")
    conn.execute(update(BankEntryRow).where(BankEntryRow.id == existing.id).values(**values))
    return existing.id, True


def remove_in(conn: Connection, bank: str, hash_hex: str, by: str, missing_ok: bool = False) -> int | None:
    """Tombstone an entry inside the caller's transaction: its id; NotFound (None with `missing_ok`)
    when the bank holds no such live entry."""
    hash_hex = from_hex(hash_hex).hex()
    bank_id, _ = _bank_row(conn, bank)
    seq = _next_seqs(conn, 1)
    done = conn.execute(update(BankEntryRow).where(BankEntryRow.bank_id == bank_id, BankEntryRow.hash == hash_hex,
                                                   BankEntryRow.removed_at.is_(None))
                        .values(seq=seq, removed_at=now(), removed_by=by).returning(BankEntryRow.id)).first()
    if done is None and not missing_ok:
        raise NotFound(f"bank {bank!r} holds no {hash_hex}")
    return done.id if done is not None else None


def _load_chunk(conn: Connection, bank_id: int, organisation: str, chunk: list[tuple[int, EntryInput]], by: str,
                report: ImportReport) -> None:
    firsts: dict[str, tuple[int, EntryInput]] = {}
    for number, entry in chunk:
        if entry.hash in firsts:
            _duplicate(report, number)
        else:
            firsts[entry.hash] = (number, entry)
    if not firsts:
        return
    existing = {row.hash: row for row in conn.execute(
        select(BankEntryRow.id, BankEntryRow.hash, BankEntryRow.removed_at)
        .where(BankEntryRow.bank_id == bank_id, BankEntryRow.hash.in_(list(firsts))))}
    new, restored = [], []
    for hash_hex, (number, entry) in firsts.items():
        found = existing.get(hash_hex)
        if found is None:
            new.append(entry)
        elif found.removed_at is not None:
            restored.append((found.id, entry))
        else:
            _duplicate(report, number)
    if not new and not restored:
        return
    last = _next_seqs(conn, len(new) + len(restored))
    seqs = iter(range(last - len(new) - len(restored) + 1, last + 1))
    if new:
        conn.execute(insert(BankEntryRow), [dict(bank_id=bank_id, **_row_values(e, organisation, by, next(seqs)))
                                            for e in new])
    for entry_id, entry in restored:
        conn.execute(update(BankEntryRow).where(BankEntryRow.id == entry_id)
                     .values(**_row_values(entry, organisation, by, next(seqs))))
    report.added += len(new)
    report.restored += len(restored)


def _duplicate(report: ImportReport, number: int) -> None:
    report.duplicates += 1
    if len(report.duplicate_lines) < 20:
        report.duplicate_lines.append(number)


def _next_seqs(conn: Connection, count: int) -> int:
    """Reserve `count` seqs and return the last. The counter row stays locked until this transaction
    ends, so bank changes commit in seq order (server/review/bank_schema.py)."""
    return conn.execute(update(BankCounter).where(BankCounter.id == 1).values(seq=BankCounter.seq + count)
                        .returning(BankCounter.seq)).scalar_one()


def _bank_row(conn: Connection, name: str) -> tuple[int, str]:
    row = conn.execute(select(Bank.id, Bank.organisation).where(Bank.name == name)).first()
    if row is None:
        raise NotFound(f"no bank {name!r}; `wildscreen-review banks list` shows them")
    return row.id, row.organisation


def _row_values(entry: EntryInput, organisation: str, by: str, seq: int) -> dict:
    if len(by) > _TEXT_LIMITS["added_by"]:
        raise InvalidInput(f"added_by is longer than {_TEXT_LIMITS['added_by']} characters")
    return dict(seq=seq, hash=entry.hash, quality=entry.quality, label=entry.label,
                organisation=entry.organisation or organisation, reference_id=entry.reference_id, added_at=now(),
                added_by=by, expires_at=entry.expires_at, removed_at=None, removed_by=None,
                embedding=entry.embedding, embedding_model=entry.embedding_model)


def _entries_query():
    return select(BankEntryRow, Bank.name.label("bank_name")).join(Bank, Bank.id == BankEntryRow.bank_id)


def _stored(e) -> StoredEntry:
    return StoredEntry(id=e.id, seq=e.seq, bank=e.bank_name, hash=e.hash, quality=e.quality, label=e.label,
                       organisation=e.organisation, reference_id=e.reference_id, added_at=aware(e.added_at),
                       added_by=e.added_by, expires_at=aware(e.expires_at), removed_at=aware(e.removed_at),
                       embedding=e.embedding, embedding_model=e.embedding_model)


def _utc(moment: datetime) -> datetime:
    """Aware and in UTC (SQLite keeps no zone: a datetime in another zone would read back wrong)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
