"""Schema migrations: a database made by an older release is brought to the newest schema at start,
keeping its items, and the queue reads in queue order from the index alone."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from server.review.database import MIGRATIONS, connect, default_url
from server.review.store import ReviewStore
from tests.support.review import head_revision, listing_image, screen_line


def test_a_first_release_database_is_upgraded_at_start_and_keeps_its_items(tmp_path):
    url = default_url(tmp_path)
    old = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with old.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    old.dispose()
    engine = connect(url)  # what `wildscreen-review serve` does
    store = ReviewStore(engine, tmp_path)
    lines = [("weak", "VERDICT_REVIEW", 0.4), ("flag", "VERDICT_FLAG", 0.8), ("strong", "VERDICT_REVIEW", 0.6)]
    for seed, (rid, verdict, conf) in enumerate(lines):
        store.add(listing_image(seed), screen_line(rid, verdict, detections=(("ivory", conf, (10, 10, 60, 50)),)))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
        plan = " ".join(str(row) for row in connection.execute(text(
            "EXPLAIN QUERY PLAN SELECT id FROM items WHERE state = 'queued' "
            "ORDER BY priority DESC, top_confidence DESC, id LIMIT 50 OFFSET 10")))
    assert "ix_items_queue" in plan and "TEMP B-TREE" not in plan, plan  # no sort of the whole queue
    assert "ix_items_queue" in {i["name"] for i in inspect(engine).get_indexes("items")}
    assert [i.request_id for i in store.page()] == ["flag", "strong", "weak"]
    assert [i.request_id for i in store.page(offset=1, limit=1)] == ["strong"]
    assert store.counts() == {"queued_flag": 1, "queued_review": 2, "decided": 0}
    engine.dispose()
