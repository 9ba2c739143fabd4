"""The workbench over real HTTP: undo of one's own last decision, reject reasons, the list view's
filters and paging (and their bad inputs), an item by its URL with its place in the queue, the
decision context (thresholds, the box that made the verdict, the listing's other images), and
old stores that already hold one image twice."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, select

from server.core.errors import Conflict
from server.review.database import MIGRATIONS, connect
from server.review.schema import Item
from server.review.store import ReviewStore
from tests.support.review import insert_old_items, listing_image, review_service, screen_line

CLI = {"x-requested-by": "wildscreen"}


@pytest.fixture()
def service(tmp_path):
    with review_service(tmp_path / "review") as svc:
        yield svc


def add(svc, seed: int, rid: str, verdict: str = "VERDICT_FLAG", conf: float = 0.8, label: str = "ivory",
        listing: str = "L", version: str = "v7") -> int:
    line = screen_line(rid, verdict, detections=[(label, conf, (10, 10, 60, 50)), ("tiger_parts", 0.35, (70, 60, 120, 110))],
                       version=version)
    answer = httpx.post(f"{svc.url}/api/items", files={"image": ("x.jpg", listing_image(seed))},
                        data={"result": json.dumps(line), "listing_id": listing}, headers=CLI)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def browser_for(svc) -> httpx.Client:
    token = httpx.get(f"{svc.url}/").text.split('name="csrf-token" content="')[1].split('"')[0]
    return httpx.Client(base_url=svc.url, headers={"x-csrf-token": token})


def test_a_reviewer_undoes_their_last_decision_and_only_that(service):
    first, second = add(service, 1, "a"), add(service, 2, "b")
    store = service.store
    store.decide(store.next_for("anna").id, "anna", "confirm")
    store.decide(store.next_for("anna").id, "anna", "reject", reason="duplicate")
    with pytest.raises(Conflict) as older:
        store.undo(first, "anna")
    assert "only your last decision" in str(older.value)
    with browser_for(service) as local:  # loopback: the reviewer "local", who decided nothing
        answer = local.post(f"/api/items/{second}/undo")
        assert answer.status_code == 403 and "decided by anna" in answer.json()["error"]["message"]
    undone = store.undo(second, "anna")
    assert undone["state"] == "queued" and undone["claimed_by"] == "anna" and undone["reason"] is None
    assert [h["action"] for h in store.history(second)] == ["reject", "undo"]  # audited like any decision
    assert store.history(second)[-1]["before"]["reason"] == "duplicate"
    with pytest.raises(Conflict) as again:
        store.undo(second, "anna")
    assert "nothing to undo" in str(again.value)
    assert store.next_for("anna").id == second  # back with anna, who decides it again
    store.decide(second, "anna", "confirm")
    assert store.undoable("anna") == second and store.get(second).decision == "confirm"


def test_undo_over_http_conflicts_are_clear(service):
    item_id = add(service, 3, "c")
    with browser_for(service) as local:
        assert local.post(f"/api/items/{item_id}/undo").status_code == 409  # not decided
        assert local.post("/api/next", json={}).json()["item"]["id"] == item_id
        decided = local.post(f"/api/items/{item_id}/decision", json={"action": "confirm"}).json()
        assert decided["undoable"] == item_id
        undone = local.post(f"/api/items/{item_id}/undo")
        assert undone.status_code == 200 and undone.json()["item"]["state"] == "queued"
        assert undone.json()["position"] == {"n": 1, "of": 1}
        assert local.post("/api/items/999/undo").status_code == 404
        assert local.post(f"/api/items/{item_id}/undo", headers={"x-csrf-token": "0" * 64}).status_code == 403


@pytest.mark.parametrize("body, words", [
    ({"action": "reject", "reason": "ugly"}, "not one of"),
    ({"action": "reject", "reason": 7}, "not one of"),
    ({"action": "confirm", "reason": "duplicate"}, "with a reject only"),
    ({"action": "reject", "reason": "other"}, "needs a note"),
])
def test_a_reject_reason_comes_from_the_short_list(service, body, words):
    item_id = add(service, 4, "d")
    with browser_for(service) as local:
        local.post("/api/next", json={})
        answer = local.post(f"/api/items/{item_id}/decision", json=body)
        assert answer.status_code == 400 and words in answer.json()["error"]["message"], answer.text
        ok = local.post(f"/api/items/{item_id}/decision", json={"action": "reject", "reason": "other", "note": "a carving"})
        assert ok.status_code == 200 and ok.json()["item"]["reason"] == "other"


def test_the_list_filters_and_pages_in_queue_order(service):
    ids = {}
    for i, (verdict, conf, label, version) in enumerate([("VERDICT_FLAG", 0.9, "ivory", "v1"), ("VERDICT_REVIEW", 0.5, "ivory", "v2"),
                                                         ("VERDICT_REVIEW", 0.4, "tiger_parts", "v10"), ("VERDICT_FLAG", 0.8, "ivory", "v2")]):
        ids[i] = add(service, 10 + i, f"r{i}", verdict, conf, label, version=version)
    service.store.next_for("anna")  # anna holds the strongest FLAG
    get = lambda **q: httpx.get(f"{service.url}/api/queue", params=q).json()  # noqa: E731
    assert [i["id"] for i in get()["items"]] == [ids[0], ids[3], ids[1], ids[2]] and get()["total"] == 4
    assert [i["id"] for i in get(verdict="REVIEW")["items"]] == [ids[1], ids[2]]
    assert [i["id"] for i in get(**{"class": "tiger_parts"})["items"]] == [ids[2]]
    assert [i["id"] for i in get(min_version="v2")["items"]] == [ids[3], ids[1], ids[2]]  # v10 after v9, not before v2
    assert [i["id"] for i in get(state="claimed")["items"]] == [ids[0]]
    assert get(state="claimed")["items"][0]["claimed_by"] == "anna"
    assert ids[0] not in [i["id"] for i in get(state="waiting")["items"]]
    paged = get(offset=1, limit=2)
    assert [i["id"] for i in paged["items"]] == [ids[3], ids[1]] and paged["total"] == 4
    page = httpx.get(f"{service.url}/list", params={"limit": 2, "offset": 2})
    assert page.status_code == 200 and "3-4 of 4" in page.text and 'id="prev"' in page.text and 'id="next"' not in page.text
    assert f'href="/items/{ids[0]}"' not in page.text and f'href="/items/{ids[2]}"' in page.text


@pytest.mark.parametrize("query, words", [
    ({"offset": "-1"}, "offset must be 0 or more"),
    ({"limit": "100000"}, "limit must be 1 to 500"),
    ({"limit": "0"}, "limit must be 1 to 500"),
    ({"offset": "ten"}, "integer"),
    ({"verdict": "CLEAR"}, "verdict 'CLEAR' is not one of"),
    ({"class": "unicorn_horn"}, "class 'unicorn_horn' is not one of"),
    ({"state": "lost"}, "state 'lost' is not one of"),
    ({"sort": "id"}, "unknown parameter 'sort'"),
])
def test_bad_filters_and_paging_are_a_clear_400(service, query, words):
    answer = httpx.get(f"{service.url}/api/queue", params=query)
    assert answer.status_code == 400 and words in answer.json()["error"]["message"], answer.text
    page = httpx.get(f"{service.url}/list", params=query)
    assert page.status_code == 400 and words.split("'")[0] in page.text


def test_an_item_has_its_url_its_place_and_its_context(service):
    strongest = add(service, 20, "s", conf=0.95, listing="listing-5")
    item_id = add(service, 21, "/photos/listing-5/b.jpg", conf=0.75, listing="listing-5")
    add(service, 22, "elsewhere", conf=0.5, verdict="VERDICT_REVIEW", listing="listing-6")
    assert httpx.get(f"{service.url}/items/{item_id}").status_code == 200
    assert httpx.get(f"{service.url}/items/12345").status_code == 404
    data = httpx.get(f"{service.url}/api/items/{item_id}").json()
    assert data["position"] == {"n": 2, "of": 3}
    assert data["item"]["source_path"] == "/listings//photos/listing-5/b.jpg.jpg"
    assert [o["id"] for o in data["listing"]] == [strongest]
    boxes = data["item"]["detections"]
    assert [(b["label"], b["deciding"], b["review_threshold"], b["flag_threshold"]) for b in boxes] == \
           [("ivory", True, 0.3, 0.7), ("tiger_parts", False, 0.3, 0.7)]
    with browser_for(service) as local:
        claimed = local.post(f"/api/items/{item_id}/claim").json()
        assert claimed["item"]["claimed_by"] == "local"
        service.store.next_for("anna")  # anna takes the strongest
        held = local.post(f"/api/items/{strongest}/claim")
        assert held.status_code == 409 and "held by anna" in held.json()["error"]["message"]


def old_store_with_one_image_twice(url: str, image: bytes) -> None:
    """A store as 0002 left it, which allowed one image under two request ids (feed and CLI)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    old = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with old.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        sha = hashlib.sha256(image).hexdigest()
        insert_old_items(connection, {"image_sha256": sha, "request_id": "feed-1"}, {"image_sha256": sha, "request_id": "cli-1"})
    old.dispose()


def test_an_old_store_keeps_its_duplicates_and_new_intake_is_deduplicated(empty_database, tmp_path):
    image = listing_image(1)
    old_store_with_one_image_twice(empty_database, image)
    engine = connect(empty_database)  # the upgrade at start
    try:
        store = ReviewStore(engine, tmp_path)
        with store.sessions() as session:
            rows = session.execute(select(Item.id, Item.request_id, Item.image_key).order_by(Item.id)).all()
        assert [(r.request_id, r.image_key is not None) for r in rows] == [("feed-1", True), ("cli-1", False)]
        again = store.add(image, screen_line("cli-2"))
        assert again.created is False and again.item_id == rows[0].id  # the first holds the image
        assert store.add(listing_image(2), screen_line("cli-2")).created
        assert store.counts()["queued_flag"] == 3
    finally:
        engine.dispose()
