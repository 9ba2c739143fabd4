"""The review database: SQLite in the data dir by default, PostgreSQL (or any SQLAlchemy URL) for
a shared deployment; `upgrade head` at start, so a new release's migrations run on the old file."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'review.sqlite3'}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL: readers never wait for the writer; a busy timeout instead of "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def connect(url: str) -> Engine:
    """An engine for `url`, the schema migrated to the newest revision."""
    engine = open_engine(url)
    upgrade(engine)
    return engine


def open_engine(url: str) -> Engine:
    """An engine for `url` as it is, not migrated: for a reader that does not own the database
    (the screening server reading the hash banks)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


MIGRATION_LOCK_ID = 0x77696C64  # "wild": PostgreSQL's advisory lock, one migrating process at a time


def upgrade(engine: Engine, target: str = "head") -> None:
    """Migrate to `target` all or nothing: a process killed part-way leaves the schema as it was.

    PostgreSQL runs DDL inside the transaction as it is. Python's SQLite driver does not: it commits
    before every CREATE or DROP, so a crash between two tables left a first start's file with one
    table and an empty alembic_version, and every later start failed on "table items already
    exists". SQLite runs the migration on a connection of its own where we issue BEGIN IMMEDIATE
    ourselves (SQLAlchemy's documented recipe for pysqlite), which also makes two processes starting
    at once take turns; the store's connections keep the driver's usual behaviour."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    migrating = _transactional_sqlite(engine) if engine.dialect.name == "sqlite" else engine
    try:
        with migrating.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            config.attributes["connection"] = connection
            command.upgrade(config, target)
    finally:
        if migrating is not engine:
            migrating.dispose()


def _transactional_sqlite(engine: Engine) -> Engine:
    migrating = create_engine(engine.url, poolclass=NullPool)

    @event.listens_for(migrating, "connect")
    def _driver_leaves_transactions_to_us(dbapi_connection, record) -> None:
        _sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.isolation_level = None

    @event.listens_for(migrating, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return migrating


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
