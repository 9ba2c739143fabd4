"""Bank administration over HTTP on a real review service (uvicorn, SQLite file, a real keys file):
an admin key creates, adds, lists, exports, imports and removes with the CLI's rules; every other
caller is refused on every route, reads included, and nothing changes."""

from __future__ import annotations

import io
import json
import os

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from server.core.embedding import pack, to_text
from server.review import bank_files, banks_api
from server.review.bank_schema import Bank, BankCounter, BankEntryRow
from server.review.banks import BankStore, EntryInput
from tests.support.review import review_service

CLI = {"x-requested-by": "wildscreen"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def hashes(count: int) -> list[str]:
    return [os.urandom(32).hex() for _ in range(count)]


def snapshot(engine) -> tuple:
    """Everything bank administration could change: banks, entries (tombstones too), the seq counter."""
    with engine.connect() as conn:
        return tuple(tuple(tuple(row) for row in conn.execute(select(table)))
                     for table in (Bank, BankEntryRow, BankCounter))


@pytest.fixture()
def admin(tmp_path):
    with review_service(tmp_path / "review") as svc, \
            httpx.Client(base_url=svc.url, headers=bearer(svc.keys.add("ops", "admin"))) as client:
        yield svc, client


def test_an_admin_key_creates_adds_imports_lists_exports_and_removes(admin, monkeypatch):
    svc, client = admin
    created = client.post("/api/banks", json={"name": "partner", "action": "review", "organisation": "TRAFFIC",
                                              "description": "seized ivory"})
    assert created.status_code == 201 and created.json()["action"] == "REVIEW", created.text
    assert client.post("/api/banks", json={"name": "partner", "action": "FLAG", "organisation": "x"}).status_code == 409

    first, *good = hashes(21)
    added = client.post("/api/banks/partner/entries", json={"hash": first.upper(), "label": "ivory",
                                                            "reference_id": "C-1", "expires_at": "2030-01-31"})
    assert added.status_code == 201, added.text
    shown = added.json()
    assert (shown["hash"], shown["added_by"], shown["label"]) == (first, "key:ops", "ivory")
    assert shown["organisation"] == "TRAFFIC"
    assert client.post("/api/banks/partner/entries", json={"hash": first}).status_code == 409

    body = "\n".join(["hash,label,reference_id", *[f"{h},pangolin_scales,C-{i}" for i, h in enumerate(good)],
                      "abc,ivory,C-bad", f"{good[0]},ivory,C-again"]) + "\n"
    imported = client.post("/api/banks/partner/import", content=body)
    assert imported.status_code == 200, imported.text
    report = imported.json()
    assert (report["added"], report["duplicates"], report["duplicate_lines"]) == (20, 1, [23])
    assert [b["line"] for b in report["bad_lines"]] == [22] and "64 hex" in report["bad_lines"][0]["problem"]

    listed = client.get("/api/banks").json()["banks"]
    assert [(b["name"], b["action"], b["organisation"], b["entries"]) for b in listed] == \
        [("partner", "REVIEW", "TRAFFIC", 21)]

    monkeypatch.setattr(banks_api, "EXPORT_CHUNK", 7)  # pieces cross chunk edges: 21 entries, 3 full chunks
    cli = io.StringIO()
    bank_files.write(BankStore(svc.store.engine).entries("partner"), cli, "csv")
    exported = client.get("/api/banks/partner/entries")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.text == cli.getvalue()  # as the CLI writes it, header once
    lines = client.get("/api/banks/partner/entries", params={"format": "jsonl"}).text.splitlines()
    assert [json.loads(line)["hash"] for line in lines] == [first, *good]
    assert client.get("/api/banks/partner/entries", params={"format": "hex"}).text.split() == [first, *good]
    assert client.get("/api/banks/partner/entries", params={"format": "xml"}).status_code == 400

    removed = client.delete(f"/api/banks/partner/entries/{good[3]}")
    assert removed.status_code == 200 and removed.json()["removed_at"], removed.text
    assert client.delete(f"/api/banks/partner/entries/{good[3]}").status_code == 404
    with svc.store.engine.connect() as conn:
        row = conn.execute(select(BankEntryRow).where(BankEntryRow.hash == good[3])).one()
    assert (row.added_by, row.removed_by) == ("key:ops", "key:ops")
    assert good[3] not in client.get("/api/banks/partner/entries", params={"format": "hex"}).text
    assert client.get("/api/banks").json()["banks"][0]["entries"] == 20


def test_an_entry_may_carry_an_embedding_and_the_export_says_so_as_the_cli_does(admin):
    svc, client = admin
    client.post("/api/banks", json={"name": "b", "action": "FLAG", "organisation": "o"})
    vector = to_text(pack(np.arange(1, 9, dtype=np.float32)))
    added = client.post("/api/banks/b/entries", json={"hash": "ab" * 32, "embedding": vector, "embedding_model": "m1"})
    assert added.status_code == 201 and added.json()["embedding_model"] == "m1", added.text
    assert client.post("/api/banks/b/entries", json={"hash": "cd" * 32, "embedding": vector}).status_code == 400
    assert client.get("/api/banks").json()["banks"][0]["embeddings"] == {"m1": 1}
    cli = io.StringIO()
    bank_files.write(BankStore(svc.store.engine).entries("b"), cli, "csv", embeddings=True)
    exported = client.get("/api/banks/b/entries").text
    assert exported == cli.getvalue() and exported.startswith("hash,") and "embedding_model" in exported.splitlines()[0]
    assert json.loads(client.get("/api/banks/b/entries?format=jsonl").text)["embedding"] == vector


@pytest.mark.parametrize("body, words", [
    ({"hash": "ab" * 32, "colour": "red"}, "unknown fields colour"),
    ({"hash": "ab" * 32, "quality": "90"}, "whole number"),
    ({"hash": "ab" * 32, "quality": 20}, "outside 50-100"),
    ({"hash": "ab" * 32, "label": "unicorn"}, "unknown label"),
    ({"hash": "xyz"}, "64 hex"),
    ({"label": "ivory"}, "hash"),
    ({"hash": "ab" * 32, "expires_at": "soon"}, "ISO 8601"),
])
def test_a_bad_entry_is_a_clear_400(admin, body, words):
    svc, client = admin
    client.post("/api/banks", json={"name": "b", "action": "FLAG", "organisation": "o"})
    answer = client.post("/api/banks/b/entries", json=body)
    assert answer.status_code == 400 and words in answer.json()["error"]["message"], answer.text


def test_refused_imports_apply_nothing(tmp_path):
    with review_service(tmp_path / "review", max_import_bytes=4096) as svc:
        client = httpx.Client(base_url=svc.url, headers=bearer(svc.keys.add("ops", "admin")))
        client.post("/api/banks", json={"name": "b", "action": "FLAG", "organisation": "o"})
        assert client.post("/api/banks/b/import", content="\n".join(hashes(3))).json()["added"] == 3
        before = snapshot(svc.store.engine)

        all_bad = client.post("/api/banks/b/import", content="not a hash\nnor this\n")
        assert all_bad.status_code == 400 and "nothing was imported" in all_bad.json()["error"]["message"]
        assert [b["line"] for b in all_bad.json()["bad_lines"]] == [1, 2]

        too_many_bad = client.post("/api/banks/b/import", params={"max_bad_lines": 1},
                                   content="\n".join([*hashes(5), "bad", "worse"]))
        assert too_many_bad.status_code == 400 and "more than 1 bad lines" in too_many_bad.json()["error"]["message"]
        assert len(too_many_bad.json()["bad_lines"]) == 2

        over = client.post("/api/banks/b/import", content="\n".join(hashes(100)))  # 6.5 KB over 4 KiB
        assert over.status_code == 400 and "limit" in over.json()["error"]["message"]
        chunked = client.post("/api/banks/b/import", content=iter([("\n".join(hashes(100))).encode()]))
        assert chunked.status_code == 400 and "limit" in chunked.json()["error"]["message"]

        assert client.post("/api/banks/b/import", content="").status_code == 400
        assert client.post("/api/banks/b/import", content=b"\xff\xfe" * 40).status_code == 400
        assert client.post("/api/banks/nope/import", content="\n".join(hashes(2))).status_code == 404
        assert client.post("/api/banks/b/import", params={"format": "xml"}, content=hashes(1)[0]).status_code == 400
        assert snapshot(svc.store.engine) == before


ROUTES = [
    ("GET", "/api/banks", None),
    ("GET", "/api/banks/b/entries", None),
    ("GET", "/api/banks/b/entries?format=jsonl", None),
    ("POST", "/api/banks", {"json": {"name": "new", "action": "FLAG", "organisation": "o"}}),
    ("POST", "/api/banks/b/entries", {"json": {"hash": "cd" * 32}}),
    ("DELETE", "/api/banks/b/entries/" + "ab" * 32, None),
    ("POST", "/api/banks/b/import", {"content": "ef" * 32 + "\n"}),
]
CALLERS = [("review key", 403), ("screen key", 403), ("reviewer cookie", 403), ("no key", 401), ("unknown key", 401)]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """One service for the refusals: a bank holding one entry, a key of each role, a logged-in reviewer."""
    with review_service(tmp_path_factory.mktemp("guarded")) as svc:
        BankStore(svc.store.engine).create("b", "FLAG", "o")
        BankStore(svc.store.engine).add("b", EntryInput(hash="ab" * 32), "setup")
        svc.accounts.add("alice", "correct horse")
        with httpx.Client(base_url=svc.url) as browser:
            assert browser.post("/login", data={"name": "alice", "password": "correct horse"}).status_code == 303
            cookie = {"cookie": f"wildscreen_review={browser.cookies['wildscreen_review']}",
                      "x-csrf-token": svc.accounts.csrf_token("alice"), **CLI}
        yield svc, {"review key": bearer(svc.keys.add("intake", "review")),
                    "screen key": bearer(svc.keys.add("platform", "screen")),
                    "reviewer cookie": cookie, "no key": CLI, "unknown key": bearer("ws_" + "x" * 43)}


@pytest.mark.parametrize("who, status", CALLERS)
@pytest.mark.parametrize("method, path, send", ROUTES)
def test_only_an_admin_key_may_read_or_change_banks(guarded, who, status, method, path, send):
    svc, headers = guarded
    before = snapshot(svc.store.engine)
    answer = httpx.request(method, svc.url + path, headers=headers[who], **(send or {}))
    assert answer.status_code == status, answer.text
    assert "admin" in answer.json()["error"]["message"] or who == "unknown key"
    assert snapshot(svc.store.engine) == before


def test_with_no_keys_file_the_loopback_operator_administers_with_the_cli_header(tmp_path):
    """No --keys: the local machine is the operator, as everywhere in the service; its changes need the
    CLI header so that a page in a browser cannot send one, and a reviewer is still no admin."""
    with review_service(tmp_path / "review", without_keys=True) as svc:
        create = {"name": "local", "action": "FLAG", "organisation": "o"}
        assert httpx.get(f"{svc.url}/api/banks").json() == {"banks": []}
        forged = httpx.post(f"{svc.url}/api/banks", json=create)
        assert forged.status_code == 403 and "x-requested-by" in forged.json()["error"]["message"]
        assert httpx.post(f"{svc.url}/api/banks", json=create, headers=CLI).status_code == 201
        entry = httpx.post(f"{svc.url}/api/banks/local/entries", json={"hash": "ab" * 32}, headers=CLI)
        assert entry.status_code == 201 and entry.json()["added_by"] == "local"
        assert httpx.get(f"{svc.url}/api/banks", headers=bearer("ws_anything")).status_code == 401

        svc.accounts.add("alice", "correct horse")
        with httpx.Client(base_url=svc.url) as browser:
            browser.post("/login", data={"name": "alice", "password": "correct horse"})
            assert browser.get("/api/banks").status_code == 403
    with review_service(tmp_path / "closed", without_keys=True, allow_loopback=False) as svc:
        assert httpx.get(f"{svc.url}/api/banks").status_code == 401
