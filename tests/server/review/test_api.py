"""The review service over real HTTP (uvicorn on a free port, SQLite file): intake and its bad
inputs, duplicates, claims, CSRF, accounts and keys, escaping, and the one status table."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from server.core.errors import Conflict, ImageTooLarge, InvalidInput, NotFound, WildscreenError
from server.review.status import HTTP_STATUS, http_status_of
from tests.support.review import listing_image, review_service, screen_line

CLI = {"x-requested-by": "wildscreen"}


@pytest.fixture()
def service(tmp_path):
    with review_service(tmp_path / "review") as svc:
        yield svc


def post_item(url: str, image: bytes, line, listing: str = "L", headers=CLI) -> httpx.Response:
    result = line if isinstance(line, str) else json.dumps(line)
    return httpx.post(f"{url}/api/items", files={"image": ("x.jpg", image)}, data={"result": result, "listing_id": listing},
                      headers=headers)


def csrf_of(client: httpx.Client) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)


def test_the_same_image_is_one_item_whoever_sends_it(service):
    """The server's feed and the CLI's --queue send one photo with different request ids: one item,
    the first; later submissions answer 200 with its id."""
    first = post_item(service.url, listing_image(1), screen_line("r1"))
    again = post_item(service.url, listing_image(1), screen_line("r1"))
    from_the_cli = post_item(service.url, listing_image(1), screen_line("/photos/listing-9/a.jpg"), listing="listing-9")
    other_image = post_item(service.url, listing_image(2), screen_line("r1"))
    assert (first.status_code, again.status_code, from_the_cli.status_code, other_image.status_code) == (201, 200, 200, 201)
    assert first.json()["id"] == again.json()["id"] == from_the_cli.json()["id"] != other_image.json()["id"]
    assert from_the_cli.json()["created"] is False
    assert service.store.get(first.json()["id"]).request_id == "r1"  # the first is kept
    assert service.store.counts()["queued_flag"] == 2


@pytest.mark.parametrize("image, line, status, words", [
    (b"", screen_line("a"), 400, "empty"),
    (b"\xff\xd8\xff\xe0 not really", screen_line("a"), 400, "JPEG"),
    (listing_image(2), "{not json", 400, "not JSON"),
    (listing_image(2), screen_line("a", verdict="VERDICT_CLEAR"), 400, "needs no person"),
    (listing_image(2), screen_line("a", width=999), 400, "999x120"),
    (listing_image(2), screen_line("a", detections=[("unicorn_horn", 0.9, (1, 1, 9, 9))]), 400, "unknown class"),
    (listing_image(2), screen_line("a", detections=[("ivory", float("nan"), (1, 1, 9, 9))]), 400, "finite"),
    (listing_image(2), screen_line("a", detections=[("ivory", 0.9, (500, 500, 600, 600))]), 400, "empty inside"),
    (listing_image(2), screen_line("x" * 201), 400, "longer than 200"),
    (listing_image(2), [1, 2], 400, "JSON object"),
    (listing_image(2), {"error": {"code": 3}}, 400, "error line"),
])
def test_bad_intake_is_a_clear_400_and_the_service_stays_up(service, image, line, status, words):
    answer = post_item(service.url, image, line)
    assert answer.status_code == status and words in answer.json()["error"]["message"], answer.text
    assert httpx.get(f"{service.url}/healthz").status_code == 200


def test_uploads_over_the_limit_are_refused_before_they_are_read(tmp_path):
    with review_service(tmp_path / "r") as svc:
        svc.store.limits = type(svc.store.limits)(max_bytes=10_000)
        answer = post_item(svc.url, b"\xff\xd8" + b"\0" * 2_000_000, screen_line("big"))
        assert answer.status_code == 413 and "limit" in answer.json()["error"]["message"]


def test_intake_without_the_cli_header_or_a_key_is_refused_as_a_possible_csrf(service):
    answer = post_item(service.url, listing_image(3), screen_line("a"), headers={})
    assert answer.status_code == 403 and "CSRF" in answer.json()["error"]["message"]


def test_away_from_loopback_a_key_with_the_review_role_is_needed(tmp_path):
    with review_service(tmp_path / "r", allow_loopback=False) as svc:
        assert post_item(svc.url, listing_image(4), screen_line("a")).status_code == 401
        screen_key = svc.keys.add("platform", "screen")
        review_key = svc.keys.add("intake", "review")
        assert post_item(svc.url, listing_image(4), screen_line("a"), headers={"authorization": f"Bearer {screen_key}"}).status_code == 403
        assert post_item(svc.url, listing_image(4), screen_line("a"), headers={"authorization": f"Bearer {review_key}"}).status_code == 201
        assert httpx.get(f"{svc.url}/", follow_redirects=False).headers["location"] == "/login"
        assert httpx.get(f"{svc.url}/api/queue").status_code == 401


def test_a_reviewer_logs_in_and_every_change_needs_the_csrf_token(tmp_path):
    with review_service(tmp_path / "r", allow_loopback=False) as svc:
        svc.accounts.add("alice", "correct horse")
        post_item(svc.url, listing_image(5), screen_line("a"), headers={"authorization": f"Bearer {svc.keys.add('k', 'review')}"})
        with httpx.Client(base_url=svc.url) as browser:
            wrong = browser.post("/login", data={"name": "alice", "password": "wrong password"})
            assert wrong.headers["location"] == "/login?failed=1"
            right = browser.post("/login", data={"name": "alice", "password": "correct horse"})
            assert right.status_code == 303 and "httponly" in right.headers["set-cookie"].lower()
            assert "samesite=strict" in right.headers["set-cookie"].lower()
            assert browser.post("/api/next", json={}).status_code == 403
            assert browser.post("/api/next", json={}, headers={"x-csrf-token": "0" * 64}).status_code == 403
            item = browser.post("/api/next", json={}, headers={"x-csrf-token": csrf_of(browser)}).json()["item"]
            assert item["claimed_by"] == "alice"
        forged = httpx.post(f"{svc.url}/api/next", json={}, cookies={"wildscreen_review": "alice|9999999999|" + "0" * 64})
        assert forged.status_code == 401


def test_two_reviewers_never_hold_the_same_item_and_claims_expire(tmp_path):
    with review_service(tmp_path / "r", claim_seconds=0.5) as svc:
        for i in range(2):
            post_item(svc.url, listing_image(10 + i), screen_line(f"r{i}"))
        a, b = svc.store.next_for("alice"), svc.store.next_for("bob")
        assert a.id != b.id and svc.store.next_for("carol") is None
        assert svc.store.next_for("alice").id == a.id  # a reload gives alice her item back
        with pytest.raises(Conflict):
            svc.store.decide(a.id, "bob", "confirm")
        import time

        time.sleep(0.6)
        assert svc.store.next_for("carol").id in (a.id, b.id)  # expired: free again


def test_decisions_are_audited_and_a_decided_item_cannot_be_decided_again(service):
    post_item(service.url, listing_image(20), screen_line("r", detections=[("ivory", 0.9, (10, 10, 60, 50)),
                                                                          ("ivory", 0.1, (70, 70, 90, 90))]))
    item = service.store.next_for("alice")
    with pytest.raises(InvalidInput):
        service.store.decide(item.id, "alice", "fix", [{"label": "ivory", "x_min": 5, "y_min": 5, "x_max": 5, "y_max": 9}])
    with pytest.raises(InvalidInput):
        service.store.decide(item.id, "alice", "approve")
    after = service.store.decide(item.id, "alice", "confirm", note="<b>sure</b>")
    assert [b["x_min"] for b in after["final_boxes"]] == [10.0]  # only what reached the review threshold
    with pytest.raises(Conflict):
        service.store.decide(item.id, "alice", "reject")
    with pytest.raises(NotFound):
        service.store.decide(12345, "alice", "reject")
    (entry,) = service.store.history(item.id)
    assert entry["reviewer"] == "alice" and entry["action"] == "confirm" and entry["note"] == "<b>sure</b>"
    assert entry["before"]["state"] == "queued" and entry["after"]["decision"] == "confirm"


def test_user_text_is_escaped_in_the_pages(service):
    post_item(service.url, listing_image(30), screen_line("r", version="<script>alert(1)</script>"), listing="<i>x</i>")
    item = service.store.next_for("local")
    service.store.decide(item.id, "local", "reject")
    stats = httpx.get(f"{service.url}/stats")
    assert "<script>alert(1)</script>" not in stats.text and "&lt;script&gt;" in stats.text
    assert "script-src 'self'" in stats.headers["content-security-policy"]


def test_stats_count_confirmed_flags_relabelled_ones_and_rejected_reviews(service):
    """A flag fixed to another class is a miss for the model's class, not a confirmed flag."""
    verdicts = ["VERDICT_FLAG", "VERDICT_FLAG", "VERDICT_FLAG", "VERDICT_FLAG", "VERDICT_REVIEW", "VERDICT_REVIEW"]
    for i, verdict in enumerate(verdicts):
        post_item(service.url, listing_image(40 + i), screen_line(f"s{i}", verdict=verdict,
                                                                  detections=[("ivory", 0.8 if "FLAG" in verdict else 0.4, (10, 10, 60, 50))]))
    relabelled = [{"label": "pangolin_scales", "x_min": 10, "y_min": 10, "x_max": 60, "y_max": 50}]
    moved = [{"label": "ivory", "x_min": 20, "y_min": 10, "x_max": 70, "y_max": 60}]
    for action, boxes, reason in [("confirm", None, None), ("reject", None, "not_wildlife"), ("fix", relabelled, None),
                                  ("fix", moved, None), ("reject", None, "duplicate"), ("confirm", None, None)]:
        service.store.decide(service.store.next_for("local").id, "local", action, boxes, reason=reason)
    (row,) = httpx.get(f"{service.url}/api/stats").json()["rows"]
    assert (row["flags"], row["flags_confirmed"], row["reviews"], row["reviews_rejected"]) == (4, 2, 2, 1)
    assert (row["confirmed"], row["moved"], row["relabelled"], row["rejected"]) == (2, 1, 1, 2)
    assert row["relabelled_to"] == {"pangolin_scales": 1} and row["reasons"] == {"not_wildlife": 1, "duplicate": 1}
    assert row["flag_precision"] == 0.5 and row["model_version"] == "v7" and row["label"] == "ivory"
    page = httpx.get(f"{service.url}/stats").text
    assert "1 to pangolin_scales" in page and "1 not wildlife" in page


def test_the_queue_is_flag_first_then_by_confidence(service):
    for rid, verdict, conf in [("low", "VERDICT_REVIEW", 0.35), ("flag", "VERDICT_FLAG", 0.75), ("high", "VERDICT_REVIEW", 0.6)]:
        post_item(service.url, listing_image(hash(rid) % 1000), screen_line(rid, verdict=verdict, detections=[("ivory", conf, (1, 1, 50, 50))]))
    listed = httpx.get(f"{service.url}/api/queue").json()
    assert [i["request_id"] for i in listed["items"]] == ["flag", "high", "low"]
    assert "FLAG before REVIEW" in listed["order"]


def test_the_table_maps_every_domain_error_and_hides_bugs():
    assert http_status_of(ImageTooLarge("x"))[0] == 413 and http_status_of(InvalidInput("x"))[0] == 400
    kinds = {k for k in vars(__import__("server.core.errors", fromlist=["x"])).values()
             if isinstance(k, type) and issubclass(k, WildscreenError) and k is not WildscreenError}
    assert kinds <= set(HTTP_STATUS) | {k for k in kinds if any(b in HTTP_STATUS for b in k.__mro__[1:])}
    status, body = http_status_of(RuntimeError("secret internals"))
    assert status == 500 and "secret" not in json.dumps(body)
