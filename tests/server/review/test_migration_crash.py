"""A review service killed inside a migration starts again: the migration is all or nothing, on
SQLite and on PostgreSQL, on a first start and on an upgrade of a store full of decisions."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from sqlalchemy import create_engine, inspect, text

from server.review.database import connect, upgrade
from server.review.store import ReviewStore
from tests.support.review import head_revision, insert_old_items, listing_image, screen_line

# Runs `connect(url)` as `wildscreen-review serve` does at start, and SIGKILLs itself just before the
# n-th statement that starts with the given words: the crash lands between two DDL statements.
KILLED_MIGRATION = textwrap.dedent("""
    import os, signal, sys
    from sqlalchemy import Engine, event
    from server.review.database import connect

    url, words, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = 0

    @event.listens_for(Engine, "before_cursor_execute")
    def crash(conn, cursor, statement, parameters, context, executemany):
        global seen
        if statement.lstrip().upper().startswith(words):
            seen += 1
            if seen == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    connect(url)
""")


def migrate_and_get_killed(url: str, words: str, nth: int = 1) -> None:
    run = subprocess.run([sys.executable, "-c", KILLED_MIGRATION, url, words, str(nth)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr  # it really died inside the migration


def test_a_first_start_killed_between_two_tables_starts_again(empty_database, tmp_path):
    migrate_and_get_killed(empty_database, "CREATE INDEX")  # after `items`, before the other tables
    engine = connect(empty_database)  # the restart
    try:
        assert {"items", "decisions", "reviewers", "alembic_version"} <= set(inspect(engine).get_table_names())
        store = ReviewStore(engine, tmp_path)
        store.add(listing_image(1), screen_line("after-crash"))
        assert store.counts()["queued_flag"] == 1
    finally:
        engine.dispose()


def test_an_upgrade_killed_part_way_keeps_the_decisions_and_completes_at_the_next_start(empty_database, tmp_path):
    engine = create_engine(empty_database.replace("postgresql://", "postgresql+psycopg://"))
    upgrade(engine, "0001")  # a store made by the first release, written as it wrote them
    with engine.begin() as connection:
        decided, *_ = insert_old_items(connection, *({"image_sha256": f"{seed:064d}", "request_id": f"r{seed}"} for seed in range(3)))
        connection.execute(text("UPDATE items SET state = 'decided', decision = 'confirm', decided_by = 'ana' WHERE id = :id"),
                           {"id": decided})
    engine.dispose()

    migrate_and_get_killed(empty_database, "CREATE INDEX")  # 0002 has dropped the old queue index by then
    engine = connect(empty_database)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
        assert "ix_items_queue" in {i["name"] for i in inspect(engine).get_indexes("items")}
        store = ReviewStore(engine, tmp_path)
        assert store.counts() == {"queued_flag": 2, "queued_review": 0, "decided": 1}
        assert store.get(decided).decision == "confirm" and store.get(decided).outcome == "confirmed"
    finally:
        engine.dispose()
