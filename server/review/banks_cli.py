"""`wildscreen-review banks ...`: hash banks on the command line.

    wildscreen-review banks list
    wildscreen-review banks create NAME --action FLAG|REVIEW --organisation ORG [--description TEXT]
    wildscreen-review banks add BANK HASH_OR_IMAGE --label ivory --reference-id C-123 --by alice
    wildscreen-review banks remove BANK HASH --by alice
    wildscreen-review banks import BANK FILE [--format auto|csv|jsonl] [--label L] [--by NAME]
    wildscreen-review banks export BANK OUT [--format csv|jsonl]       (OUT "-" is stdout)

The file formats are in server/review/bank_files.py. The commands work on the review database
(--data-dir or --database-url, before `banks`); running servers pick changes up at their next poll.
Exit codes: 0 done, 1 an import with bad lines (the good ones loaded), 2 refused (nothing changed).
`list` shows, per bank, how many entries carry an embedding of each model; an export of a bank with
embeddings says on stderr that only PDQ hashes are comparable everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
from pathlib import Path

from server import settings
from server.core.errors import WildscreenError
from server.core.matching import BANK_ACTIONS
from server.review.settings import ReviewSettings

_BAD_LINES_SHOWN = 50
EMBEDDINGS_NOTICE = ("note: the embeddings in this export ({models}) are only comparable between deployments "
                     "that pin the same backbone wheel and projection (embedding_model says which); "
                     "PDQ hashes are the interchange format")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the `banks` group on wildscreen-review's subcommands."""
    banks = sub.add_parser("banks", help="hash banks of known images: list, create, add, remove, import, export",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = banks.add_subparsers(dest="action", required=True)

    actions.add_parser("list", help="the banks, their actions and sizes, and their embeddings per model"
                       ).set_defaults(handler=cmd_list)

    create = actions.add_parser("create", help="create a bank")
    create.add_argument("name", help="the new bank's name, e.g. acme-confirmed")
    create.add_argument("--action", required=True, type=str.upper, choices=BANK_ACTIONS,
                        help="what a match does to the verdict")
    create.add_argument("--organisation", required=True, help="the owner of the bank's entries")
    create.add_argument("--description", default="")
    create.set_defaults(handler=cmd_create)

    add = actions.add_parser("add", help="add one hash (64 hex characters) or the PDQ hash of an image file")
    add.add_argument("bank", help="the bank to add to")
    add.add_argument("hash", help="64 hex characters, or the path of an image to hash")
    add.add_argument("--label", default="known_trafficking_image", help="a taxonomy class or known_trafficking_image")
    add.add_argument("--reference-id", default="", help="listing id or case number")
    add.add_argument("--organisation", default=None, help="default: the bank's owner")
    add.add_argument("--expires-at", default=None, help="ISO 8601; default: never")
    _by(add)
    add.set_defaults(handler=cmd_add)

    remove = actions.add_parser("remove", help="remove a hash (a tombstone: servers drop it at their next poll)")
    remove.add_argument("bank", help="the bank to remove from")
    remove.add_argument("hash", help="the PDQ hash, 64 hex characters")
    _by(remove)
    remove.set_defaults(handler=cmd_remove)

    load = actions.add_parser("import", help="load a partner's list (CSV, bare hashes or JSON lines) in one transaction")
    load.add_argument("bank", help="the bank to import into (it must exist)")
    load.add_argument("file", help='the list; "-" reads stdin')
    load.add_argument("--format", default="auto", choices=("auto", "csv", "jsonl"))
    load.add_argument("--label", default="known_trafficking_image", help="for lines without a label")
    load.add_argument("--organisation", default=None, help="for lines without one; default: the bank's owner")
    load.add_argument("--max-bad-lines", type=int, default=1000,
                      help="refuse the whole file past this many bad lines (the wrong file, most likely)")
    _by(load)
    load.set_defaults(handler=cmd_import)

    export = actions.add_parser("export", help="write a bank for sharing: hashes, labels, reference ids; never images")
    export.add_argument("bank", help="the bank to export")
    export.add_argument("out", help='the file; "-" writes stdout')
    export.add_argument("--format", default="csv", choices=("csv", "jsonl"))
    export.set_defaults(handler=cmd_export)


def _by(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", default=None, help="who does it, for the record; default: the login name")


def _who(args: argparse.Namespace) -> str:
    return args.by or getpass.getuser()


def _store(args: argparse.Namespace):
    from server.review.banks import BankStore
    from server.review.database import connect, default_url

    config = settings.from_namespace(ReviewSettings, args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return BankStore(connect(config.database_url or default_url(config.data_dir)))


def _refused(exc: Exception) -> int:
    print(f"wildscreen-review: {exc}", file=sys.stderr)
    return 2


def cmd_list(args: argparse.Namespace) -> int:
    banks = _store(args).banks()
    if not banks:
        print("no banks yet: wildscreen-review banks create NAME --action FLAG --organisation ORG")
    for bank in banks:
        embedded = ", ".join(f"{model} {count}" for model, count in bank.embeddings.items()) or "none"
        print(f"{bank.name}\t{bank.action}\t{bank.size} entries\t{bank.organisation}\t{bank.description}"
              f"\tembeddings: {embedded}")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    try:
        bank = _store(args).create(args.name, args.action, args.organisation, args.description)
    except WildscreenError as exc:
        return _refused(exc)
    print(f"bank {bank.name} created ({bank.action}, {bank.organisation})")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from server.review.bank_files import parse_time
    from server.review.banks import EntryInput

    try:
        hash_hex, quality = _hash_of(args.hash)
        entry = EntryInput(hash=hash_hex, label=args.label, reference_id=args.reference_id,
                           organisation=args.organisation, quality=quality,
                           expires_at=parse_time(args.expires_at) if args.expires_at else None)
        stored = _store(args).add(args.bank, entry, _who(args))
    except WildscreenError as exc:
        return _refused(exc)
    print(f"added {stored.hash} to {stored.bank} (entry {stored.id})")
    return 0


def _hash_of(text: str) -> tuple[str, int | None]:
    """A hash as given, or the PDQ hash and quality of the image file at that path."""
    path = Path(text)
    if len(text) == 64 or not path.is_file():
        return text, None
    from server.core import pdq
    from server.core.decoding import decode

    hashed = pdq.hash_image(decode(path.read_bytes()).pixels)
    if not hashed.usable:
        from server.core.errors import InvalidInput

        raise InvalidInput(f"{path}: PDQ quality {hashed.quality} is below {pdq.MIN_QUALITY}: too flat to bank")
    return hashed.hex, hashed.quality


def cmd_remove(args: argparse.Namespace) -> int:
    try:
        stored = _store(args).remove(args.bank, args.hash, _who(args))
    except WildscreenError as exc:
        return _refused(exc)
    print(f"removed {stored.hash} from {stored.bank}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from server.review import bank_files
    from server.review.banks import ImportRefused

    store = _store(args)
    try:
        store.bank(args.bank)  # an unknown bank before reading a line
        with _opened(args.file, "r") as stream:
            report = store.import_entries(args.bank, bank_files.read(stream, args.format, args.label, args.organisation),
                                          _who(args), max_bad_lines=args.max_bad_lines)
    except ImportRefused as exc:
        _print_bad_lines(exc.report.bad_lines)
        return _refused(exc)
    except (WildscreenError, OSError) as exc:
        return _refused(exc)
    _print_bad_lines(report.bad_lines)
    duplicates = f" (lines {', '.join(map(str, report.duplicate_lines))}{', ...' if report.duplicates > 20 else ''})"
    print(f"imported into {args.bank}: {report.added} added, {report.restored} restored, "
          f"{report.duplicates} duplicates skipped{duplicates if report.duplicates else ''}, "
          f"{len(report.bad_lines)} bad lines")
    return 1 if report.bad_lines else 0


def _print_bad_lines(bad_lines: list[tuple[int, str]]) -> None:
    for number, problem in bad_lines[:_BAD_LINES_SHOWN]:
        print(f"line {number}: {problem}", file=sys.stderr)
    if len(bad_lines) > _BAD_LINES_SHOWN:
        print(f"... and {len(bad_lines) - _BAD_LINES_SHOWN} more bad lines", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    from server.review import bank_files

    store = _store(args)
    try:
        models = store.bank(args.bank).embeddings
        with _opened(args.out, "w") as out:
            count = bank_files.write(store.entries(args.bank), out, args.format, embeddings=bool(models))
    except (WildscreenError, OSError) as exc:
        return _refused(exc)
    if models:  # on stderr: neither file format has room for a comment
        print(EMBEDDINGS_NOTICE.format(models=", ".join(models)), file=sys.stderr)
    print(f"exported {count} entries of {args.bank}", file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


@contextlib.contextmanager
def _opened(name: str, mode: str):
    if name == "-":
        yield sys.stdin if mode == "r" else sys.stdout
        return
    with open(name, mode, newline="", encoding="utf-8") as stream:
        yield stream
