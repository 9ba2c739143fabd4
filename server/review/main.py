"""`wildscreen-review`: the reviewer workbench.

    wildscreen-review serve [--port 8080] [--data-dir review-data] [--database-url postgresql://...]
    wildscreen-review reviewers add NAME          (password from stdin with --password-stdin)
    wildscreen-review export OUT                  the decided items as an Ultralytics dataset

Every flag has a WILDSCREEN_REVIEW_* variable (e.g. WILDSCREEN_REVIEW_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from server.core.errors import InvalidInput


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"WILDSCREEN_REVIEW_{name.upper()}", default)


def open_store(args: argparse.Namespace):
    from server.review.database import connect, default_url
    from server.review.store import ReviewStore

    args.data_dir.mkdir(parents=True, exist_ok=True)
    engine = connect(args.database_url or default_url(args.data_dir))
    return ReviewStore(engine, args.data_dir, claim_seconds=args.claim_seconds), engine


def build_app(args: argparse.Namespace):
    from server.core.keys import KeyStore
    from server.review.accounts import Accounts, load_secret
    from server.review.app import ReviewApp

    store, engine = open_store(args)
    keys = KeyStore(args.keys) if args.keys else None
    return ReviewApp(store, Accounts(engine, load_secret(args.data_dir)), keys, allow_loopback=not args.no_loopback,
                     secure_cookies=args.secure_cookies).starlette()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(build_app(args), host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def cmd_reviewers_add(args: argparse.Namespace) -> int:
    from server.review.accounts import Accounts, load_secret

    _, engine = open_store(args)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(f"password for {args.name}: ")
    try:
        Accounts(engine, load_secret(args.data_dir)).add(args.name, password)
    except InvalidInput as exc:
        print(f"wildscreen-review: {exc}", file=sys.stderr)
        return 2
    print(f"reviewer {args.name} added")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from server.review.export import export_dataset

    store, _ = open_store(args)
    counts = export_dataset(store, args.out)
    print(f"exported to {args.out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"next: wildscreen-train import yolo {args.out} --dataset DATASET --source review --group folder")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wildscreen-review", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(_env("data_dir", "review-data")),
                        help="images, the SQLite file and the signing key")
    parser.add_argument("--database-url", default=_env("database_url"), help="SQLAlchemy URL; default: SQLite in --data-dir")
    parser.add_argument("--claim-seconds", type=float, default=float(_env("claim_seconds", "600")),
                        help="how long a reviewer holds an item before others may take it")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="serve the queue page and the API (the default)")
    serve.add_argument("--host", default=_env("host", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(_env("port", "8080")))
    serve.add_argument("--keys", type=Path, default=_env("keys"),
                       help="keys file of wildscreen-serve; keys with the review role may queue items")
    serve.add_argument("--no-loopback", action="store_true", default=_env("no_loopback") == "1",
                       help="ask loopback callers to log in too (behind a reverse proxy every caller is loopback)")
    serve.add_argument("--secure-cookies", action="store_true", help="send the session cookie over HTTPS only")
    serve.set_defaults(handler=cmd_serve)

    reviewers = sub.add_parser("reviewers", help="reviewer accounts").add_subparsers(dest="action", required=True)
    add = reviewers.add_parser("add", help="add a reviewer (asks for a password)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true")
    add.set_defaults(handler=cmd_reviewers_add)

    export = sub.add_parser("export", help="write the decided items as an Ultralytics dataset")
    export.add_argument("out", type=Path)
    export.set_defaults(handler=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*(argv or sys.argv[1:]), "serve"])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
