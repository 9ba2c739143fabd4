"""Hash banks in the review database, on SQLite and PostgreSQL: add, remove as a tombstone that a
replica polling by seq sees, expiry, imports with bad lines (all or nothing), export round trips."""

from __future__ import annotations

import io
import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from server.core.errors import Conflict, InvalidInput, NotFound
from server.core.matching import BankMatcher
from server.review import bank_files
from server.review.banks import BankStore, EntryInput, ImportRefused
from server.review.database import connect, default_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = default_url(tmp_path) if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = connect(url)
    yield BankStore(engine)
    engine.dispose()


def new_bank(store: BankStore, action: str = "FLAG") -> str:
    name = f"bank-{uuid.uuid4().hex[:8]}"  # PostgreSQL's database is shared by the session's tests
    store.create(name, action, "WWF", "test bank")
    return name


def hashes(n: int) -> list[str]:
    return [os.urandom(32).hex() for _ in range(n)]


def test_add_remove_and_re_add_reach_a_replica_polling_by_seq(store):
    bank, (h1, h2) = new_bank(store), hashes(2)
    matcher = BankMatcher(store)
    matcher.refresh()
    first = store.add(bank, EntryInput(h1, "ivory", "L-1"), by="alice")
    store.add(bank, EntryInput(h2.upper(), "known_trafficking_image", "C-123"), by="alice")
    assert first.organisation == "WWF" and first.added_by == "alice" and first.added_at.tzinfo is not None
    assert matcher.refresh() == 2
    found = matcher.match([bytes.fromhex(h2)])
    assert [(m.bank, m.reference_id, m.action, m.distance) for m in found] == [(bank, "C-123", "FLAG", 0)]
    with pytest.raises(Conflict):
        store.add(bank, EntryInput(h2), by="bob")

    removed = store.remove(bank, h2, by="bob")
    assert removed.removed_at is not None and removed.seq > first.seq
    assert matcher.refresh() == 1 and matcher.match([bytes.fromhex(h2)]) == []
    with pytest.raises(NotFound):
        store.remove(bank, h2, by="bob")
    assert [e.hash for e in store.entries(bank)] == [h1]
    assert len(list(store.entries(bank, include_removed=True))) == 2

    back = store.add(bank, EntryInput(h2, "ivory", "C-124"), by="carol")
    assert back.id == removed.id and back.removed_at is None
    matcher.refresh()
    assert [m.reference_id for m in matcher.match([bytes.fromhex(h2)])] == ["C-124"]
    assert {b.name: b.size for b in store.banks()}[bank] == 2


def test_expired_entries_stay_stored_but_do_not_match(store):
    bank, (h,) = new_bank(store, "REVIEW"), hashes(1)
    store.add(bank, EntryInput(h, expires_at=datetime.now(timezone.utc) - timedelta(minutes=1)), by="alice")
    matcher = BankMatcher(store)
    matcher.refresh()
    assert matcher.match([bytes.fromhex(h)]) == []
    assert [e.expires_at < datetime.now(timezone.utc) for e in store.entries(bank)] == [True]


@pytest.mark.parametrize("entry, problem", [
    (dict(hash="ab" * 31), "64 hex"), (dict(hash="xy" * 32), "0-9 and a-f"),
    (dict(hash="ab" * 32, label="unicorn"), "unknown label"), (dict(hash="ab" * 32, quality=49), "outside 50-100"),
    (dict(hash="ab" * 32, reference_id="x" * 201), "longer than 200")])
def test_bad_entries_are_refused_with_the_reason(entry, problem):
    with pytest.raises(InvalidInput, match=problem):
        EntryInput(**entry)


def test_unknown_banks_and_bank_names_are_clear_errors(store):
    bank = new_bank(store)
    with pytest.raises(NotFound, match="no bank 'nope'"):
        store.add("nope", EntryInput(hashes(1)[0]), by="alice")
    with pytest.raises(NotFound):
        store.import_entries("nope", [], by="alice")
    with pytest.raises(Conflict):
        store.create(bank, "FLAG", "WWF")
    with pytest.raises(InvalidInput, match="FLAG or REVIEW"):
        store.create("other", "BLOCK", "WWF")


def test_an_import_loads_the_good_lines_reports_the_bad_ones_and_skips_duplicates(store):
    bank, good = new_bank(store), hashes(300)
    store.add(bank, EntryInput(good[0]), by="alice")
    lines = ["hash,label,reference_id,quality,expires_at"]
    lines += [f"{h},ivory,C-{i},90," for i, h in enumerate(good)]
    lines[5] = "ab" * 31 + ",ivory,C-x,90,"                  # line 6: too short
    lines[50] = "zz" * 32 + ",ivory,C-y,90,"                 # line 51: not hex
    lines[100] = good[200] + ",unicorn,C-z,90,"              # line 101: unknown label
    lines[150] = good[151] + ",ivory,C-q,20,"                # line 151: quality below 50
    lines[200] = good[201] + ",ivory,C-d,90,2027-13-45"      # line 201: bad date
    lines.append(f"{good[7].upper()},ivory,C-dup,90,")       # a duplicate of line 9
    report = store.import_entries(bank, bank_files.read(io.StringIO("\n".join(lines))), by="import")
    assert [n for n, _ in report.bad_lines] == [6, 51, 101, 151, 201]
    assert "0-9 and a-f" in dict(report.bad_lines)[51] and "quality 20" in dict(report.bad_lines)[151]
    assert report.added == 300 - 1 - 5 and report.duplicates == 2 and sorted(report.duplicate_lines) == [2, 302]
    assert {b.name: b.size for b in store.banks()}[bank] == 300 - 5


def test_an_import_with_too_many_bad_lines_or_a_crash_applies_nothing(store):
    bank = new_bank(store)
    text = "\n".join(hashes(100) + ["nonsense"] * 5)
    with pytest.raises(ImportRefused) as refused:
        store.import_entries(bank, bank_files.read(io.StringIO(text)), by="import", max_bad_lines=3)
    assert len(refused.value.report.bad_lines) == 4
    assert store.bank(bank).size == 0

    def crashing():
        yield from bank_files.read(io.StringIO("\n".join(hashes(1200))))
        raise OSError("disk went away")

    with pytest.raises(OSError):
        store.import_entries(bank, crashing(), by="import")
    assert store.bank(bank).size == 0 and BankMatcher(store).refresh() >= 0


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_imports_into_another_bank_as_it_was(store, fmt):
    source, target = new_bank(store), new_bank(store)
    for i, h in enumerate(hashes(30)):
        store.add(source, EntryInput(h, "pangolin_scales" if i % 2 else "ivory", f"C-{i}", quality=80 + i % 20,
                                     expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc) if i == 3 else None), by="a")
    store.remove(source, next(store.entries(source)).hash, by="a")
    out = io.StringIO()
    assert bank_files.write(store.entries(source), out, fmt) == 29
    assert "image" not in out.getvalue().splitlines()[0]
    report = store.import_entries(target, bank_files.read(io.StringIO(out.getvalue())), by="b")
    assert report.added == 29 and not report.bad_lines
    fields = lambda e: (e.hash, e.label, e.reference_id, e.quality, e.expires_at, e.organisation)  # noqa: E731
    assert sorted(map(fields, store.entries(target))) == sorted(map(fields, store.entries(source)))


def test_bare_hashes_and_threatexchange_lines_import():
    h1, h2, h3 = hashes(3)
    text = f"{h1}\npdq {h2}\n{h3},87,photo.jpg\n\n"
    parsed = list(bank_files.read(io.StringIO(text), label="tiger_parts"))
    assert [(n, e.hash, e.quality, e.label) for n, e in parsed] == [(1, h1, None, "tiger_parts"), (2, h2, None, "tiger_parts"),
                                                                  (3, h3, 87, "tiger_parts")]
    bad = list(bank_files.read(io.StringIO('{"hash": "%s"}\n{"hash": 12}\nnot json\n' % h1)))
    assert bad[0][1].hash == h1 and "64 hex" in bad[1][1] and bad[2] == (3, "not JSON: Expecting value")
