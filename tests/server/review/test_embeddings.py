"""The embedding signal, the review side: a bank entry and a screened item carry the photo's embedding
and its model's name (migration 0006) from intake through a confirm into the own bank, through an
import and an export, to the replicas polling by seq; bad vectors are a clear error naming the line
or the field. Real SQLite files, nothing mocked."""

from __future__ import annotations

import base64
import io
import json
import os
import random
from datetime import datetime, timezone

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, Table, create_engine

from server.core.decoding import DecodeLimits
from server.core.embedding import pack, to_text
from server.core.errors import InvalidInput
from server.review import bank_files
from server.review.banks import BankStore, EntryInput
from server.review.database import connect, default_url, upgrade
from server.review.intake import read_submission
from server.review.main import main
from server.review.schema import Base
from server.review.store import ReviewStore
from tests.support.review import head_revision, insert_old_items, listing_image, screen_line

MODEL = "lite2-pca128-3f9a1c2e"
WHEN = datetime(2026, 12, 1, tzinfo=timezone.utc)


def vector(seed: int, dim: int = 128) -> bytes:
    """A packed unit vector, as the screening server's embedding signal makes them."""
    v = np.random.default_rng(seed).normal(size=dim)
    return pack(v / np.linalg.norm(v))


def hashes(n: int) -> list[str]:
    return [os.urandom(32).hex() for _ in range(n)]


@pytest.fixture()
def banks(tmp_path):
    engine = connect(default_url(tmp_path))
    store = BankStore(engine)
    store.create("partner", "FLAG", "WWF")
    yield store
    engine.dispose()


# the store ------------------------------------------------------------------------------------------

def test_an_embedding_reaches_a_replica_and_a_re_add_replaces_it(banks):
    h1, h2 = hashes(2)
    banks.add("partner", EntryInput(h1, "ivory", "C-1", embedding=vector(1), embedding_model=MODEL), by="ana")
    banks.add("partner", EntryInput(h2, "ivory", "C-2"), by="ana")
    with_one, without = banks.entries_since(0, 100)
    assert (with_one.embedding, with_one.embedding_model) == (vector(1), MODEL)
    assert (without.embedding, without.embedding_model) == (None, "")
    assert banks.bank("partner").embeddings == {MODEL: 1}

    banks.remove("partner", h1, by="bo")
    back = banks.add("partner", EntryInput(h1, "ivory", "C-3", embedding=vector(2), embedding_model="other"), by="bo")
    assert (back.embedding, back.embedding_model) == (vector(2), "other")
    assert banks.entries_since(with_one.seq, 100)[-1].embedding == vector(2)
    banks.remove("partner", h1, by="bo")
    assert banks.add("partner", EntryInput(h1), by="bo").embedding is None  # a re-add without one clears it
    assert banks.bank("partner").embeddings == {}


@pytest.mark.parametrize("changes, words", [
    (dict(embedding=vector(1)), "needs its model's name"),
    (dict(embedding_model=MODEL), "needs its model's name"),
    (dict(embedding=vector(1), embedding_model="m" * 65), "embedding_model is longer than 64"),
    (dict(embedding=b"\x00" * 256, embedding_model=MODEL), "not all zeros"),
    (dict(embedding=b"\x01" * 255, embedding_model=MODEL), "float16 numbers, not 255 bytes"),
    (dict(embedding=np.full(128, np.inf, "<f2").tobytes(), embedding_model=MODEL), "finite"),
])
def test_bad_embeddings_are_refused_with_the_reason(changes, words):
    with pytest.raises(InvalidInput, match=words):
        EntryInput("ab" * 32, **changes)


# bank files -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_embeddings_round_trip_through_an_export_and_an_import(banks, fmt):
    banks.create("mirror", "REVIEW", "us")
    for i, h in enumerate(hashes(6)):
        banks.add("partner", EntryInput(h, "ivory", f"C-{i}", embedding=vector(i) if i % 2 else None,
                                        embedding_model=MODEL if i % 2 else ""), by="ana")
    out = io.StringIO()
    assert bank_files.write(banks.entries("partner"), out, fmt, embeddings=True) == 6
    lines = out.getvalue().splitlines()
    if fmt == "csv":
        assert lines[0] == "hash,label,reference_id,organisation,quality,expires_at,added_at,embedding,embedding_model"
    else:
        assert [sorted(json.loads(line)).count("embedding") for line in lines] == [0, 1] * 3
        second = json.loads(lines[1])
        assert (second["embedding"], second["embedding_model"]) == (to_text(vector(1)), MODEL)
    report = banks.import_entries("mirror", bank_files.read(io.StringIO(out.getvalue())), by="ops")
    assert report.added == 6 and not report.bad_lines
    fields = lambda e: (e.hash, e.reference_id, e.embedding, e.embedding_model)  # noqa: E731
    assert sorted(map(fields, banks.entries("mirror"))) == sorted(map(fields, banks.entries("partner")))


def test_a_bank_without_embeddings_exports_as_before(banks):
    banks.add("partner", EntryInput(hashes(1)[0]), by="ana")
    out = io.StringIO()
    bank_files.write(banks.entries("partner"), out, "csv")
    assert out.getvalue().splitlines()[0] == ",".join(bank_files.EXPORT_COLUMNS)
    out = io.StringIO()
    bank_files.write(banks.entries("partner"), out, "jsonl")
    assert "embedding" not in out.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_bad_embedding_is_its_lines_error_and_the_good_lines_load(banks, fmt):
    good = to_text(vector(5))
    rows = [(h, good, MODEL) for h in hashes(5)]
    rows[1] = (rows[1][0], "not base64!", MODEL)                                          # line 3 (csv) / 2 (jsonl)
    rows[2] = (rows[2][0], base64.b64encode(b"\x00" * 256).decode(), MODEL)              # all zeros
    rows[3] = (rows[3][0], good, "")                                                      # no model name
    if fmt == "csv":
        text = "hash,embedding,embedding_model\n" + "".join(f"{h},{e},{m}\n" for h, e, m in rows)
        first = 2
    else:
        text = "".join(json.dumps({"hash": h, "embedding": e, "embedding_model": m}) + "\n" for h, e, m in rows)
        first = 1
    report = banks.import_entries("partner", bank_files.read(io.StringIO(text)), by="ops")
    assert [n for n, _ in report.bad_lines] == [first + 1, first + 2, first + 3]
    problems = [p for _, p in report.bad_lines]
    assert "base64" in problems[0] and "not all zeros" in problems[1] and "model's name" in problems[2]
    assert report.added == 2
    assert {e.hash: e.embedding for e in banks.entries("partner")} == {rows[0][0]: vector(5), rows[4][0]: vector(5)}


def test_bare_lines_carry_no_embedding():
    (number, entry), = bank_files.read(io.StringIO(f"pdq {hashes(1)[0]}\n"))
    assert (number, entry.embedding, entry.embedding_model) == (1, None, "")


def test_the_cli_lists_embeddings_per_model_and_an_export_says_they_do_not_travel(banks, tmp_path, capsys):
    for i, h in enumerate(hashes(3)):
        embedded = dict(embedding=vector(i), embedding_model=MODEL) if i else {}
        banks.add("partner", EntryInput(h, **embedded), by="a")
    banks.create("plain", "FLAG", "us")
    data = ["--data-dir", str(tmp_path)]
    assert main([*data, "banks", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("partner\tFLAG\t3 entries\tWWF") and listed[0].endswith(f"\tembeddings: {MODEL} 2")
    assert listed[1].endswith("\tembeddings: none")

    out = tmp_path / "partner.jsonl"
    assert main([*data, "banks", "export", "partner", str(out), "--format", "jsonl"]) == 0
    said = capsys.readouterr()
    assert "only comparable between deployments that pin the same backbone wheel and projection" in said.err
    assert MODEL in said.err and "PDQ hashes are the interchange format" in said.err
    assert sum("embedding_model" in line for line in out.read_text().splitlines()) == 2
    assert main([*data, "banks", "export", "plain", str(tmp_path / "plain.csv")]) == 0
    assert "comparable" not in capsys.readouterr().err


# intake and the own bank ----------------------------------------------------------------------------

def embedded_line(request_id: str, seed: int) -> dict:
    return screen_line(request_id) | {"embedding": {"model": MODEL, "vector": to_text(vector(seed))}}


@pytest.mark.parametrize("embedding, words", [
    ("abc", "embedding must be an object"),
    ({"model": MODEL}, "embedding.vector must be a string"),
    ({"vector": to_text(vector(1))}, "embedding.model must be a string"),
    ({"model": "", "vector": to_text(vector(1))}, "embedding.model is empty"),
    ({"model": "m" * 65, "vector": to_text(vector(1))}, "embedding.model is longer than 64"),
    ({"model": MODEL, "vector": "%%%"}, "embedding.vector: an embedding is base64"),
    ({"model": MODEL, "vector": to_text(b"\x00" * 256)}, "embedding.vector: an embedding must be finite"),
])
def test_a_bad_embedding_in_a_result_is_a_clear_error(embedding, words):
    with pytest.raises(InvalidInput) as caught:
        read_submission(listing_image(3), screen_line("bad") | {"embedding": embedding}, "L", DecodeLimits())
    assert words in str(caught.value)


def test_intake_keeps_the_embedding_and_a_result_without_one_has_none(tmp_path):
    engine = connect(default_url(tmp_path))
    store = ReviewStore(engine, tmp_path)
    item = store.get(store.add(listing_image(1), embedded_line("e1", 7), "L-1").item_id)
    assert (item.embedding, item.embedding_model) == (vector(7), MODEL)
    for seed, line in [(2, screen_line("e2")), (3, screen_line("e3") | {"embedding": {"model": "", "vector": ""}})]:
        item = store.get(store.add(listing_image(seed), line, "L").item_id)
        assert (item.embedding, item.embedding_model) == (None, "")
    engine.dispose()


def test_a_confirm_banks_the_embedding_and_an_undo_tombstones_the_entry(tmp_path):
    engine = connect(default_url(tmp_path))
    store = ReviewStore(engine, tmp_path, own_bank="confirmed", own_bank_organisation="Example Market")
    banks = BankStore(engine)
    item_id = store.add(listing_image(random.randrange(10**6, 10**9)), embedded_line("c1", 11), "listing-1").item_id
    store.claim(item_id, "ana")
    store.decide(item_id, "ana", "confirm")
    entry, = banks.entries("confirmed")
    assert (entry.embedding, entry.embedding_model, entry.reference_id) == (vector(11), MODEL, "listing-1")
    change, = banks.entries_since(0, 100)
    assert (change.embedding, change.embedding_model, change.removed) == (vector(11), MODEL, False)
    assert banks.bank("confirmed").embeddings == {MODEL: 1}

    store.undo(item_id, "ana")
    tombstone, = banks.entries_since(change.seq, 100)
    assert tombstone.removed and tombstone.entry_id == entry.id and list(banks.entries("confirmed")) == []
    assert banks.bank("confirmed").embeddings == {}
    engine.dispose()


# migration 0006 -------------------------------------------------------------------------------------

def test_0006_upgrades_a_store_at_0005_that_holds_entries_and_items(tmp_path):
    url = default_url(tmp_path)
    old = create_engine(url)
    upgrade(old, "0005")
    (h1, h2) = hashes(2)
    with old.begin() as connection:
        tables = MetaData()
        bank_table, entries = (Table(name, tables, autoload_with=connection) for name in ("banks", "bank_entries"))
        bank_id = connection.execute(bank_table.insert().values(name="partner", action="FLAG", organisation="WWF",
                                                                description="", created=WHEN)
                                     ).inserted_primary_key[0]
        for seq, h in enumerate((h1, h2), 1):
            connection.execute(entries.insert().values(seq=seq, bank_id=bank_id, hash=h, label="ivory",
                                                       organisation="WWF", reference_id=f"C-{seq}", added_at=WHEN,
                                                       added_by="ops"))
        connection.execute(Table("bank_counter", tables, autoload_with=connection).update().values(seq=2))
        item, = insert_old_items(connection, {"image_sha256": "1" * 64})
    old.dispose()

    engine = connect(url)  # what a start of the new release does
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision() == "0006"
    banks = BankStore(engine)
    assert [(e.hash, e.embedding, e.embedding_model) for e in banks.entries("partner")] == [(h1, None, ""),
                                                                                             (h2, None, "")]
    assert banks.bank("partner").embeddings == {} and banks.bank("partner").size == 2
    old_item = ReviewStore(engine, tmp_path).get(item)
    assert (old_item.embedding, old_item.embedding_model) == (None, "")
    banks.remove("partner", h1, by="ops")
    banks.add("partner", EntryInput(h1, embedding=vector(3), embedding_model=MODEL), by="ops")
    assert [e.embedding_model for e in banks.entries_since(2, 100)] == [MODEL]
    engine.dispose()


def test_the_migrations_make_the_schema_the_models_describe(tmp_path):
    engine = connect(default_url(tmp_path))
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                               "compare_server_default": _different_defaults})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def _different_defaults(context, inspected, metadata, inspected_default, metadata_default, rendered_metadata_default):
    """Server defaults compared as values: SQLite reports '' as "''", which Alembic takes for a change."""
    unquote = lambda text: None if text is None else text.strip("()").split("::")[0].strip("'\"")  # noqa: E731
    return unquote(inspected_default) != unquote(rendered_metadata_default)


def embedding_match(**changes) -> dict:
    return {"bank": "partner", "label": "ivory", "distance": 97, "reference_id": "C-1", "added": "2026-12-01T00:00:00+00:00",
            "action": "VERDICT_FLAG", "signal": "embedding", "similarity": 0.97, **changes}


def test_a_match_by_embedding_keeps_its_similarity_and_a_bad_one_is_refused():
    submission, _, _ = read_submission(listing_image(4), screen_line("m") | {"matches": [embedding_match()]}, "L",
                                       DecodeLimits())
    assert [(m["signal"], m["similarity"], m["distance"]) for m in submission.matches] == [("embedding", 0.97, 97)]
    for bad in (1.5, "high", True):
        with pytest.raises(InvalidInput, match="similarity must be a cosine similarity"):
            read_submission(listing_image(4), screen_line("m") | {"matches": [embedding_match(similarity=bad)]}, "L",
                            DecodeLimits())
