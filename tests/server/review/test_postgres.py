"""The review store on PostgreSQL (a throwaway cluster): migrations, intake over HTTP, claims
under concurrency (SKIP LOCKED), decisions, stats and the export. Skipped where PostgreSQL is absent."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from server.review.export import export_dataset
from tests.support.review import listing_image, review_service, screen_line

pytestmark = pytest.mark.postgres


def test_the_queue_works_the_same_on_postgresql(postgres_url, tmp_path):
    with review_service(tmp_path / "review", database_url=postgres_url) as svc:
        assert svc.store.engine.dialect.name == "postgresql"
        for i in range(6):
            line = screen_line(f"pg{i}", verdict="VERDICT_FLAG" if i % 2 else "VERDICT_REVIEW",
                               detections=[("ivory", 0.4 + i / 20, (10, 10, 60, 50))])
            for _ in range(2):  # the second submission of each is the same item
                answer = httpx.post(f"{svc.url}/api/items", files={"image": ("x.jpg", listing_image(100 + i))},
                                    data={"result": json.dumps(line), "listing_id": f"L{i // 2}"},
                                    headers={"x-requested-by": "wildscreen"})
                assert answer.status_code in (200, 201), answer.text
        assert svc.store.counts() == {"queued_flag": 3, "queued_review": 3, "decided": 0}

        claimed: list[int] = []
        lock = threading.Lock()

        def reviewer(name: str) -> None:
            item = svc.store.next_for(name)
            with lock:
                claimed.append(item.id if item else -1)

        threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(claimed) == sorted(set(claimed)) and -1 not in claimed  # six reviewers, six different items

        for i, item_id in enumerate(sorted(claimed)):
            holder = svc.store.get(item_id).claimed_by
            svc.store.decide(item_id, holder, ("confirm", "reject", "fix")[i % 3],
                             [{"label": "tiger_parts", "x_min": 1, "y_min": 2, "x_max": 30, "y_max": 40}])
        rows = svc.store.stats()
        assert sum(r["flags"] + r["reviews"] for r in rows) == 6
        counts = export_dataset(svc.store, tmp_path / "out")
        assert counts["confirm"] == counts["reject"] == counts["fix"] == 2
        assert len(list((tmp_path / "out" / "images").iterdir())) == 3  # three listings, three folders
