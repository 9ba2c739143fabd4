"""Bank administration over HTTP: what `wildscreen-review banks` does on the command line, for a
platform's trust-and-safety admins who automate partner-list imports without database access.

    GET    /api/banks                              the banks: action, organisation, entry counts
    POST   /api/banks                              create: {"name", "action", "organisation", "description"}
    GET    /api/banks/NAME/entries?format=csv      the export, streamed (csv, jsonl, or hex: one hash a line)
    POST   /api/banks/NAME/entries                 add one: {"hash", "label", "reference_id", ...}
    DELETE /api/banks/NAME/entries/HASH            remove one (a tombstone: replicas drop it at their next poll)
    POST   /api/banks/NAME/import?format=auto      a list in a bank file format (server/review/bank_files.py);
                                                   also label, organisation (for lines without) and max_bad_lines

The rules are the CLI's because both call `BankStore` and `bank_files`: an import is one transaction,
bad lines are reported by number and the good ones load; more than `max_bad_lines` bad lines, or no
good line at all (the wrong file), refuse it with nothing applied. Only a key with the admin role may
call, reads included (`Callers.admin` says why loopback counts with no keys file); the change records
who made it. Errors leave through the one table (server/review/status.py).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from server.core.embedding import from_text
from server.core.errors import InvalidInput
from server.review import bank_files
from server.review.api import json_body
from server.review.bank_schema import KNOWN_IMAGE
from server.review.banks import BankInfo, BankStore, EntryInput, ImportRefused, ImportReport, StoredEntry
from server.review.callers import Service
from server.review.status import http_status_of

MAX_IMPORT_BYTES = 16 * 1024 * 1024
"""The default limit of one import's body; a larger list goes through the CLI, or in parts."""
EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson", "hex": "text/plain; charset=utf-8"}
EXPORT_CHUNK = 2000
"""Entries written per piece of the streamed export."""
TEXT_FIELDS = ("hash", "label", "reference_id", "organisation", "expires_at", "embedding", "embedding_model")
ENTRY_FIELDS = (*TEXT_FIELDS, "quality")


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def bank_view(bank: BankInfo) -> dict:
    return {"name": bank.name, "action": bank.action, "organisation": bank.organisation,
            "description": bank.description, "created": _when(bank.created), "entries": bank.size,
            "embeddings": bank.embeddings}


def entry_view(entry: StoredEntry) -> dict:
    return {"id": entry.id, "bank": entry.bank, "hash": entry.hash, "label": entry.label,
            "reference_id": entry.reference_id, "organisation": entry.organisation, "quality": entry.quality,
            "added_at": _when(entry.added_at), "added_by": entry.added_by, "expires_at": _when(entry.expires_at),
            "removed_at": _when(entry.removed_at), "embedding_model": entry.embedding_model or None}


def report_view(report: ImportReport) -> dict:
    return {"added": report.added, "restored": report.restored, "duplicates": report.duplicates,
            "duplicate_lines": report.duplicate_lines,
            "bad_lines": [{"line": number, "problem": problem} for number, problem in report.bad_lines]}


def entry_of(body: dict) -> EntryInput:
    """The entry a JSON body describes, its types checked here and its values by `EntryInput`."""
    unknown = sorted(set(body) - set(ENTRY_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown fields {', '.join(unknown)}; an entry has {', '.join(ENTRY_FIELDS)}")
    for name in TEXT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise InvalidInput(f"{name} must be a string")
    quality = body.get("quality")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int)):
        raise InvalidInput("quality must be a whole number")
    if not body.get("hash"):
        raise InvalidInput("send the entry's \"hash\", 64 hex characters")
    expires, vector = body.get("expires_at"), body.get("embedding")
    return EntryInput(hash=body["hash"], label=body.get("label") or KNOWN_IMAGE,
                      reference_id=body.get("reference_id") or "", organisation=body.get("organisation"),
                      quality=quality, expires_at=bank_files.parse_time(expires) if expires else None,
                      embedding=from_text(vector) if vector else None,
                      embedding_model=body.get("embedding_model") or "")


def export_pieces(entries: Iterable[StoredEntry], fmt: str, embeddings: bool) -> Iterator[str]:
    """The export in pieces, each written by `bank_files.write` as the CLI writes the whole (the CSV
    header once), so a million entries are never one string."""
    entries = iter(entries)
    for number in itertools.count():
        chunk = list(itertools.islice(entries, EXPORT_CHUNK))
        if fmt == "hex":
            yield "".join(f"{entry.hash}\n" for entry in chunk)
        else:
            out = io.StringIO()
            bank_files.write(chunk, out, fmt, embeddings=embeddings)
            yield out.getvalue() if number == 0 or fmt != "csv" else out.getvalue().split("\n", 1)[1]
        if len(chunk) < EXPORT_CHUNK:
            return


class BanksApi:
    def __init__(self, app: Service, max_import_bytes: int = MAX_IMPORT_BYTES) -> None:
        self.app, self.banks, self.max_import_bytes = app, BankStore(app.store.engine), max_import_bytes

    def respond(self, body: dict, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status, headers=self.app.headers)

    async def list_banks(self, request: Request) -> Response:
        self.app.admin(request)
        return self.respond({"banks": [bank_view(b) for b in self.banks.banks()]})

    async def create(self, request: Request) -> Response:
        self.app.admin(request, changing=True)
        body = await json_body(request)
        fields = {name: body.get(name, "") for name in ("name", "action", "organisation", "description")}
        if not all(isinstance(value, str) for value in fields.values()):
            raise InvalidInput("name, action, organisation and description are strings")
        if not fields["organisation"].strip():
            raise InvalidInput("a bank names its organisation: the owner of its entries, shown in exports")
        return self.respond(bank_view(self.banks.create(**fields)), 201)

    async def export(self, request: Request) -> Response:
        self.app.admin(request)
        name, fmt = request.path_params["name"], request.query_params.get("format", "csv")
        if fmt not in EXPORT_TYPES:
            raise InvalidInput(f"format is one of {', '.join(EXPORT_TYPES)}, not {fmt!r}")
        models = self.banks.bank(name).embeddings  # and a clear 404 before the first byte is sent
        return StreamingResponse(export_pieces(self.banks.entries(name), fmt, bool(models)),
                                 media_type=EXPORT_TYPES[fmt], headers=self.app.headers)

    async def add(self, request: Request) -> Response:
        caller = self.app.admin(request, changing=True)
        entry = entry_of(await json_body(request))
        return self.respond(entry_view(self.banks.add(request.path_params["name"], entry, caller.reviewer)), 201)

    async def remove(self, request: Request) -> Response:
        caller = self.app.admin(request, changing=True)
        stored = self.banks.remove(request.path_params["name"], request.path_params["hash"], caller.reviewer)
        return self.respond(entry_view(stored) | {"removed_by": caller.reviewer})

    async def import_list(self, request: Request) -> Response:
        """Import a list: 200 with the counts and any bad lines (the good ones loaded); 400 with the bad
        lines when the list was refused and nothing was applied."""
        caller = self.app.admin(request, changing=True)
        name, query = request.path_params["name"], request.query_params
        try:
            max_bad_lines = int(query.get("max_bad_lines", "1000"))
        except ValueError:
            raise InvalidInput("max_bad_lines is a whole number") from None
        self.banks.bank(name)  # an unknown bank before reading the body
        text = await self.body_text(request)
        lines = bank_files.read(io.StringIO(text, newline=""), query.get("format", "auto"),
                                query.get("label", KNOWN_IMAGE), query.get("organisation") or None)
        try:
            report = await run_in_threadpool(self.banks.import_entries, name, lines, caller.reviewer, max_bad_lines)
        except ImportRefused as exc:
            return self.refused(exc, exc.report)
        if report.bad_lines and not (report.added or report.restored or report.duplicates):
            return self.refused(InvalidInput("no line of the list is good (the wrong file?); nothing was imported"),
                                report)
        return self.respond({"bank": name, **report_view(report)})

    def refused(self, error: InvalidInput, report: ImportReport) -> JSONResponse:
        status, body = http_status_of(error)
        return self.respond(body | report_view(report), status)

    async def body_text(self, request: Request) -> str:
        """The body as text, refused past the limit before it is read where it says its length."""
        limit = self.max_import_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise InvalidInput(f"the list is {int(length)} bytes; the limit is {limit} (split it, or use "
                               "`wildscreen-review banks import`); nothing was imported")
        raw = bytearray()
        async for piece in request.stream():
            raw += piece
            if len(raw) > limit:
                raise InvalidInput(f"the list is over the limit of {limit} bytes; nothing was imported")
        if not raw.strip():
            raise InvalidInput("the list is empty; send it as the request body")
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"the list is not UTF-8 text (byte {exc.start})") from None
