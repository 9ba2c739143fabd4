"""Known-image matching, the workbench side: intake keeps a result's matches, `decided_by` and the
image-level head's scores (bad shapes are a clear 400), and the own bank follows the decisions: a
confirm or fix adds the photo's PDQ hash in the decision's transaction, an undo takes it back (a
tombstone a replica polling by seq sees), a reject never adds one, a flat photo is not banked and the
audit note says why. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import uuid

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine

from server.core.decoding import DecodeLimits, decode
from server.core.errors import InvalidInput
from server.core.pdq import hash_image
from server.review import own_bank
from server.review.bank_schema import KNOWN_IMAGE
from server.review.banks import BankStore, EntryInput
from server.review.database import connect, default_url, upgrade
from server.review.intake import read_submission
from server.review.store import ReviewStore, item_view
from tests.support.review import insert_old_items, listing_image, review_service, screen_line

CLI = {"x-requested-by": "wildscreen"}
MATCH = {"bank": "partner-wwf", "label": "ivory", "distance": 12, "reference_id": "C-123",
         "added": "2026-12-01T09:30:00Z", "action": "VERDICT_FLAG", "signal": "pdq"}
SCORES = [{"label": "pangolin_scales", "class_id": 1, "score": 0.82, "verdict": "VERDICT_FLAG",
           "heat_box": {"x_min": 20.0, "y_min": 15.0, "x_max": 110.0, "y_max": 90.0},
           "heat_box_normalized": {"x_min": 0.125, "y_min": 0.125, "x_max": 0.6875, "y_max": 0.75}},
          {"label": "ivory", "class_id": 0, "score": 0.05, "verdict": "VERDICT_CLEAR",
           "heat_box": {"x_min": 0.0, "y_min": 0.0, "x_max": 0.0, "y_max": 0.0}}]
IMAGE_THRESHOLDS = [{"id": 0, "label": "ivory", "review_threshold": 0.5, "flag_threshold": 0.8},
                    {"id": 1, "label": "pangolin_scales", "review_threshold": 0.4}]


def v3_line(request_id: str, **changes) -> dict:
    """A result line from a v3 server with banks: a known-image match and the head's scores."""
    return screen_line(request_id) | {"matches": [MATCH], "decided_by": "known image", "image_scores": SCORES,
                                      "image_thresholds": IMAGE_THRESHOLDS,
                                      "head": {"name": "wildscreen-head", "version": "v3", "sha256": "cd" * 32}} | changes


def fresh_seed() -> int:
    return random.randrange(10**6, 10**9)


@pytest.fixture()
def stores(empty_database, tmp_path):
    """On SQLite and on a PostgreSQL database of its own (conftest's empty_database)."""
    engine = connect(empty_database)
    bank = f"confirmed-{uuid.uuid4().hex[:8]}"
    yield ReviewStore(engine, tmp_path, own_bank=bank, own_bank_organisation="Example Market"), BankStore(engine), bank
    engine.dispose()


def claimed(store: ReviewStore, image: bytes, line: dict, listing: str, reviewer: str = "ana") -> int:
    item_id = store.add(image, line, listing).item_id
    store.claim(item_id, reviewer)
    return item_id


# intake ---------------------------------------------------------------------------------------------

def test_intake_keeps_matches_decided_by_and_the_image_level_scores(tmp_path):
    engine = connect(default_url(tmp_path))
    store = ReviewStore(engine, tmp_path)
    view = item_view(store.get(store.add(listing_image(1), v3_line("r1"), "L-1").item_id))
    assert view["matches"] == [{"bank": "partner-wwf", "label": "ivory", "distance": 12, "reference_id": "C-123",
                                "added": "2026-12-01T09:30:00Z", "action": "FLAG", "signal": "pdq"}]
    assert view["screen_decided_by"] == "known image" and view["head"]["version"] == "v3"
    top, low = view["image_scores"]
    assert (top["label"], top["verdict"], top["review_threshold"], top["flag_threshold"]) == ("pangolin_scales", "FLAG", 0.4, None)
    assert top["heat_box"] == {"x_min": 20.0, "y_min": 15.0, "x_max": 110.0, "y_max": 90.0}
    assert (low["label"], low["heat_box"], low["review_threshold"]) == ("ivory", None, 0.5)  # no box drawn: none
    old_style = item_view(store.get(store.add(listing_image(2), screen_line("r2"), "L-2").item_id))
    assert (old_style["matches"], old_style["image_scores"], old_style["screen_decided_by"], old_style["head"]) == ([], [], "", None)
    engine.dispose()


@pytest.mark.parametrize("changes, words", [
    ({"matches": {"bank": "x"}}, "matches must be a list"),
    ({"matches": ["C-123"]}, "matches[0] must be an object"),
    ({"matches": [MATCH | {"distance": "12"}]}, "matches[0].distance"),
    ({"matches": [MATCH | {"distance": 300}]}, "matches[0].distance"),
    ({"matches": [MATCH | {"action": "VERDICT_CLEAR"}]}, "matches[0].action"),
    ({"matches": [MATCH | {"added": "yesterday"}]}, "ISO 8601"),
    ({"matches": [MATCH | {"bank": ""}]}, "matches[0].bank is empty"),
    ({"matches": [MATCH | {"reference_id": "C" * 201}]}, "longer than 200"),
    ({"matches": [MATCH] * 101}, "at most 100"),
    ({"decided_by": 7}, "decided_by must be a string"),
    ({"image_scores": [SCORES[0] | {"label": "unicorn_horn"}]}, "unknown class"),
    ({"image_scores": [SCORES[0] | {"score": 1.5}]}, "outside 0-1"),
    ({"image_scores": [SCORES[0] | {"score": float("nan")}]}, "finite"),
    ({"image_scores": [SCORES[0] | {"verdict": "MAYBE"}]}, "is not a verdict"),
    ({"image_scores": [SCORES[0] | {"heat_box": [1, 2, 3, 4]}]}, "heat_box must be an object"),
    ({"image_scores": [SCORES[0] | {"heat_box": {"x_min": "a"}}]}, "heat_box.x_min"),
    ({"image_thresholds": [{"label": "ivory"}]}, "image_thresholds[0].review_threshold"),
    ({"head": "v3"}, "head must be an object"),
])
def test_bad_matches_and_scores_are_a_clear_400(changes, words):
    with pytest.raises(InvalidInput) as caught:
        read_submission(listing_image(3), v3_line("bad") | changes, "L", DecodeLimits())
    assert words in str(caught.value)


def test_bad_shapes_over_http_are_a_400_and_a_good_v3_line_is_queued(tmp_path):
    with review_service(tmp_path / "review") as svc:
        def post(line: str) -> httpx.Response:
            return httpx.post(f"{svc.url}/api/items", files={"image": ("x.jpg", listing_image(4))},
                              data={"result": line, "listing_id": "L"}, headers=CLI)
        bad = post(json.dumps(v3_line("a") | {"matches": [MATCH | {"distance": -1}]}))
        assert bad.status_code == 400 and "matches[0].distance" in bad.json()["error"]["message"]
        good = post(json.dumps(v3_line("a")))
        assert good.status_code == 201, good.text
        shown = httpx.get(f"{svc.url}/api/items/{good.json()['id']}").json()["item"]
        assert shown["matches"][0]["reference_id"] == "C-123" and shown["image_scores"][0]["heat_box"]["x_max"] == 110.0


def test_items_from_before_0005_show_none_of_it(tmp_path):
    url = default_url(tmp_path)
    engine = create_engine(url)
    upgrade(engine, "0004")
    with engine.begin() as connection:
        old, = insert_old_items(connection, {"image_sha256": "1" * 64})
    engine.dispose()
    engine = connect(url)
    view = item_view(ReviewStore(engine, tmp_path).get(old))
    assert (view["matches"], view["image_scores"], view["screen_decided_by"], view["banked_in"]) == ([], [], "", None)
    engine.dispose()


# the own bank ---------------------------------------------------------------------------------------

def test_the_own_bank_is_created_at_start_once_and_empty_means_none(tmp_path):
    engine = connect(default_url(tmp_path))
    ReviewStore(engine, tmp_path, own_bank="confirmed", own_bank_organisation="Example Market")
    ReviewStore(engine, tmp_path, own_bank="confirmed")  # a second start, or a second replica
    banks = BankStore(engine).banks()
    assert [(b.name, b.action, b.organisation) for b in banks] == [("confirmed", "FLAG", "Example Market")]
    off = ReviewStore(engine, tmp_path / "other", own_bank="")
    item_id = claimed(off, listing_image(5), screen_line("off"), "L-5")
    off.decide(item_id, "ana", "confirm")
    assert list(BankStore(engine).entries("confirmed")) == [] and off.get(item_id).banked_in is None
    engine.dispose()


def test_confirm_adds_the_hash_and_undo_takes_it_back(stores):
    store, banks, bank = stores
    image = listing_image(fresh_seed())
    expected = hash_image(decode(image, DecodeLimits()).pixels)
    item_id = claimed(store, image, screen_line("p1", detections=[("tiger_parts", 0.9, (10, 10, 60, 50))]), "listing-77")
    since = max([e.seq for e in banks.entries_since(0, 1_000_000)], default=0)

    decided = store.decide(item_id, "ana", "confirm")
    assert decided["banked_in"] == bank
    entry, = banks.entries(bank)
    assert (entry.hash, entry.quality, entry.label, entry.reference_id, entry.added_by, entry.organisation) == \
        (expected.hex, expected.quality, "tiger_parts", "listing-77", "ana", "Example Market")
    change, = [e for e in banks.entries_since(since, 1000) if e.bank == bank]  # what a screening replica polls
    assert (change.code.hex(), change.removed, change.reference_id) == (expected.hex, False, "listing-77")
    record = store.history(item_id)[-1]
    assert record["after"]["own_bank"] == {"bank": bank, "hash": expected.hex, "entry": entry.id, "label": "tiger_parts",
                                           "added": True}

    store.undo(item_id, "ana")
    assert list(banks.entries(bank)) == [] and store.get(item_id).banked_in is None
    tombstone, = [e for e in banks.entries_since(change.seq, 1000) if e.bank == bank]
    assert tombstone.removed and tombstone.entry_id == entry.id
    assert store.history(item_id)[-1]["after"]["own_bank"]["removed"] is True

    store.decide(item_id, "ana", "reject", reason="not_wildlife")  # undone, then rejected: never back
    assert list(banks.entries(bank)) == [] and store.get(item_id).banked_in is None


def test_a_rejected_item_never_enters(stores):
    store, banks, bank = stores
    item_id = claimed(store, listing_image(fresh_seed()), screen_line("p2"), "listing-2")
    store.decide(item_id, "ana", "reject", reason="duplicate")
    assert list(banks.entries(bank, include_removed=True)) == []
    assert "own_bank" not in store.history(item_id)[-1]["after"]


def test_a_fix_banks_the_class_the_reviewer_gave_and_an_emptied_fix_banks_nothing(stores):
    store, banks, bank = stores
    relabelled = claimed(store, listing_image(fresh_seed()), screen_line("p3"), "listing-3")
    store.decide(relabelled, "ana", "fix", [{"label": "pangolin_scales", "x_min": 10, "y_min": 10, "x_max": 60, "y_max": 50}])
    emptied = claimed(store, listing_image(fresh_seed()), screen_line("p4"), "listing-4")
    store.decide(emptied, "ana", "fix", [])
    assert [(e.label, e.reference_id) for e in banks.entries(bank)] == [("pangolin_scales", "listing-3")]


def test_a_match_only_item_is_banked_under_the_matched_label(stores):
    store, banks, bank = stores
    item_id = claimed(store, listing_image(fresh_seed()), v3_line("p5", detections=[]), "listing-5")
    store.decide(item_id, "ana", "confirm")
    assert [e.label for e in banks.entries(bank)] == ["ivory"]
    assert own_bank.deciding_label(store.get(item_id), "confirm") == "ivory"


def test_a_flat_photo_is_not_banked_and_the_audit_note_says_why(stores):
    store, banks, bank = stores
    flat = cv2.imencode(".png", np.full((120, 160, 3), fresh_seed() % 256, np.uint8))[1].tobytes()
    item_id = claimed(store, flat, screen_line("flat"), "listing-flat")
    store.decide(item_id, "ana", "confirm", note="looks like ivory")
    assert list(banks.entries(bank, include_removed=True)) == []
    record = store.history(item_id)[-1]
    assert record["note"].startswith("looks like ivory\nown bank: not added, PDQ quality ")
    assert "below 50" in record["note"] and record["after"]["own_bank"]["added"] is False
    assert store.get(item_id).decision == "confirm" and store.get(item_id).banked_in is None


def test_one_photo_in_two_items_stays_banked_while_one_stands_behind_it(stores):
    store, banks, bank = stores
    seed = fresh_seed()
    pixels = decode(listing_image(seed), DecodeLimits()).pixels
    as_png = cv2.imencode(".png", pixels)[1].tobytes()  # other bytes, another item, the same hash
    first = claimed(store, listing_image(seed), screen_line("a"), "listing-a")
    second = claimed(store, as_png, screen_line("b"), "listing-b", reviewer="bo")
    store.decide(first, "ana", "confirm")
    store.decide(second, "bo", "confirm")
    entry, = banks.entries(bank)
    assert entry.reference_id == "listing-a" and store.history(second)[-1]["after"]["own_bank"]["added"] is False
    store.undo(first, "ana")
    assert [e.id for e in banks.entries(bank)] == [entry.id]  # the second still stands behind it
    store.undo(second, "bo")
    assert list(banks.entries(bank)) == []


def test_an_entry_from_outside_the_workbench_is_never_claimed(stores):
    store, banks, bank = stores
    image = listing_image(fresh_seed())
    code = hash_image(decode(image, DecodeLimits()).pixels)
    banks.add(bank, EntryInput(code.hex, KNOWN_IMAGE, "C-9"), by="cli")
    item_id = claimed(store, image, screen_line("c"), "listing-c")
    store.decide(item_id, "ana", "confirm")
    store.undo(item_id, "ana")
    assert [e.reference_id for e in banks.entries(bank)] == ["C-9"]


def test_a_failed_bank_write_leaves_the_item_undecided(stores, monkeypatch):
    """One transaction: a crash in the bank write records no decision, and a retry banks it once."""
    store, banks, bank = stores
    item_id = claimed(store, listing_image(fresh_seed()), screen_line("d"), "listing-d")

    def crash(*args, **kwargs):
        raise RuntimeError("killed in the bank write")

    with monkeypatch.context() as patch:
        patch.setattr(own_bank, "add_in", crash)
        with pytest.raises(RuntimeError):
            store.decide(item_id, "ana", "confirm")
    item = store.get(item_id)
    assert (item.state, item.decision, item.claimed_by, store.history(item_id)) == ("queued", None, "ana", [])
    assert list(banks.entries(bank)) == []
    store.decide(item_id, "ana", "confirm")
    assert len(list(banks.entries(bank))) == 1
