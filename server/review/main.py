"""`wildscreen-review`: the reviewer workbench.

    wildscreen-review serve [--port 8080] [--data-dir review-data] [--database-url postgresql://...]
    wildscreen-review reviewers add NAME          (password from stdin with --password-stdin)
    wildscreen-review export OUT                  the decided items as an Ultralytics dataset
    wildscreen-review banks list|create|add|remove|import|export    hash banks of known images

Every flag has a WILDSCREEN_REVIEW_* variable (e.g. WILDSCREEN_REVIEW_DATABASE_URL); the settings
are in server/review/settings.py, read by the same loader as wildscreen-serve's.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from server import settings
from server.core.errors import InvalidInput
from server.logs import configure
from server.offline import stay_offline
from server.review.banks_cli import add_commands as add_bank_commands
from server.review.settings import ENV_PREFIX, ReviewServeSettings, ReviewSettings
from server.settings import HelpFormatter


def open_store(config: ReviewSettings):
    from server.review.database import connect, default_url
    from server.review.store import ReviewStore

    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = connect(config.database_url or default_url(config.data_dir))
    return ReviewStore(engine, config.data_dir, claim_seconds=config.claim_seconds, own_bank=config.own_bank.strip(),
                       own_bank_organisation=config.own_bank_organisation), engine


def build_app(config: ReviewSettings, serve: ReviewServeSettings):
    from server.core.keys import KeyStore
    from server.review.accounts import Accounts, load_secret
    from server.review.app import ReviewApp

    store, engine = open_store(config)
    keys = KeyStore(serve.keys) if serve.keys else None
    return ReviewApp(store, Accounts(engine, load_secret(config.data_dir)), keys, allow_loopback=not serve.no_loopback,
                     secure_cookies=serve.secure_cookies,
                     max_import_bytes=serve.bank_import_max_mib * 1024 * 1024).starlette()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    serve = settings.from_namespace(ReviewServeSettings, args)
    configure(serve.log)
    # log_config=None: uvicorn's own loggers propagate to the root handler configure() set up.
    uvicorn.run(build_app(settings.from_namespace(ReviewSettings, args), serve), host=serve.host, port=serve.port,
                log_config=None, log_level=serve.log.log_level.lower(), access_log=False)
    return 0


def cmd_reviewers_add(args: argparse.Namespace) -> int:
    from server.review.accounts import Accounts, load_secret

    config = settings.from_namespace(ReviewSettings, args)
    _, engine = open_store(config)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(f"password for {args.name}: ")
    try:
        Accounts(engine, load_secret(config.data_dir)).add(args.name, password)
    except InvalidInput as exc:
        print(f"wildscreen-review: {exc}", file=sys.stderr)
        return 2
    print(f"reviewer {args.name} added")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from server.review.export import export_dataset

    store, _ = open_store(settings.from_namespace(ReviewSettings, args))
    counts = export_dataset(store, args.out)
    print(f"exported to {args.out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"next: wildscreen-train import yolo {args.out} --dataset DATASET --source review --group folder")
    return 0


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The commands; their settings' flags come from server/review/settings.py (flag > variable > default)."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="wildscreen-review", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    settings.add_flags(parser, ReviewSettings, environ, ENV_PREFIX)
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="serve the queue page and the API (the default)",
                           formatter_class=HelpFormatter)
    settings.add_flags(serve, ReviewServeSettings, environ, ENV_PREFIX)
    serve.set_defaults(handler=cmd_serve)

    reviewers = sub.add_parser("reviewers", help="reviewer accounts").add_subparsers(dest="action", required=True)
    add = reviewers.add_parser("add", help="add a reviewer (asks for a password)")
    add.add_argument("name", help="the reviewer's login name")
    add.add_argument("--password-stdin", action="store_true")
    add.set_defaults(handler=cmd_reviewers_add)

    export = sub.add_parser("export", help="write the decided items as an Ultralytics dataset")
    export.add_argument("out", type=Path, help="folder to write the dataset into (made if missing)")
    export.set_defaults(handler=cmd_export)
    add_bank_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    stay_offline()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*(argv or sys.argv[1:]), "serve"])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
