"""Issue 22's loop end to end, over real HTTP and real gRPC: a reviewer confirms a flagged photo in the
workbench, and a re-upload of it (re-encoded, halved, mirrored) comes back FLAG from a running screening
server with the match in the answer, without a restart; undoing the decision takes the photo back out.
With a model that has the embedding signal, the photo reaches the queue through the server's own review
feed with its embedding, and copies PDQ misses (cropped by 10%, framed) are caught too."""

from __future__ import annotations

import asyncio
import json
import time

import cv2
import httpx

from server.review.accounts import LOCAL
from bench.reposts import border, centre_crop, side_crop
from tests.support.heads import with_embedding, with_head
from tests.support.images import jpeg_of, scene, textured_photo
from tests.support.review import review_service, screen_line
from tests.support.servers import in_process_server, small_config
from wildscreen.v1 import screening_pb2 as pb

CLI = {"x-requested-by": "wildscreen"}


def test_confirming_in_the_workbench_catches_the_reupload_on_a_running_server(untrained_weights, tmp_path):
    seized = textured_photo(7)
    original = jpeg_of(seized)
    with review_service(tmp_path / "review", own_bank="confirmed") as review:
        url = f"sqlite:///{(tmp_path / 'review' / 'review.sqlite3').resolve()}"
        csrf = {"x-csrf-token": review.accounts.csrf_token(LOCAL)}

        async def screen_until(stub, image: bytes, matched: bool) -> pb.ScreenResponse:
            deadline = time.monotonic() + 15
            while True:
                answer = await stub.Screen(pb.ScreenRequest(image=image))
                if bool(answer.matches) == matched or time.monotonic() > deadline:
                    return answer
                await asyncio.sleep(0.1)

        async def go():
            config = small_config(untrained_weights, banks_database_url=url, banks_poll_s=0.1)
            async with in_process_server(config) as (server, stub):
                before = await stub.Screen(pb.ScreenRequest(image=original))
                # The first listing reaches the queue (as the server's feed or the CLI would send it) ...
                line = screen_line("listing-1/photo.jpg", "VERDICT_REVIEW", 480, 360, (("ivory", 0.5, (40, 40, 300, 300)),))
                queued = httpx.post(f"{review.url}/api/items", headers=CLI, data={"result": json.dumps(line), "listing_id": "L-1"},
                                    files={"image": ("photo.jpg", original)})
                assert queued.status_code == 201, queued.text
                # ... and a reviewer confirms it.
                item = httpx.post(f"{review.url}/api/next", json={}, headers=csrf).json()["item"]
                decided = httpx.post(f"{review.url}/api/items/{item['id']}/decision", json={"action": "confirm"}, headers=csrf)
                assert decided.status_code == 200, decided.text
                copies = [jpeg_of(seized, 40), jpeg_of(cv2.resize(seized, (240, 180))), jpeg_of(cv2.flip(seized, 1))]
                caught = [await screen_until(stub, c, matched=True) for c in copies]
                undone = httpx.post(f"{review.url}/api/items/{item['id']}/undo", headers=csrf)
                assert undone.status_code == 200, undone.text
                released = await screen_until(stub, original, matched=False)
                return before, caught, released

        before, caught, released = asyncio.run(go())
    assert before.verdict == pb.VERDICT_CLEAR and not before.matches
    for answer in caught:
        assert answer.verdict == pb.VERDICT_FLAG and answer.decided_by == "known image"
        assert [(m.bank, m.label, m.reference_id, m.action) for m in answer.matches] == [
            ("confirmed", "ivory", "L-1", pb.VERDICT_FLAG)]
    assert not released.matches and released.verdict == pb.VERDICT_CLEAR


def test_the_embedding_catches_crops_and_the_border_trim_catches_frames_from_the_servers_own_feed(untrained_weights,
                                                                                                  tmp_path):
    # A head that calls every photo ivory for review (fixed by its bias), on Lite2, with v3's committed
    # embedding signal: the photo goes to the queue through the server's feed, embedding included.
    weights = with_embedding(with_head(untrained_weights, tmp_path, {0: 10.0}, review=0.5, flag=None, backbone="lite2"))
    seized = scene(480, 360, 0, (100, 80, 380, 300), seed=1)
    unrelated = scene(480, 360, 2, (50, 60, 300, 330), seed=2)
    with review_service(tmp_path / "review", own_bank="confirmed") as review:
        url = f"sqlite:///{(tmp_path / 'review' / 'review.sqlite3').resolve()}"
        csrf = {"x-csrf-token": review.accounts.csrf_token(LOCAL)}

        async def go():
            config = small_config(weights, banks_database_url=url, banks_poll_s=0.1, review_queue=review.url)
            async with in_process_server(config) as (server, stub):
                info = await stub.GetModelInfo(pb.GetModelInfoRequest())
                first = await stub.Screen(pb.ScreenRequest(request_id="L-9", image=jpeg_of(seized)))
                deadline, item = time.monotonic() + 30, None
                while item is None and time.monotonic() < deadline:  # the feed posts in the background
                    item = httpx.post(f"{review.url}/api/next", json={}, headers=csrf).json()["item"]
                    await asyncio.sleep(0.1)
                assert item is not None, "the feed never delivered the REVIEW result"
                decided = httpx.post(f"{review.url}/api/items/{item['id']}/decision", json={"action": "confirm"}, headers=csrf)
                assert decided.status_code == 200, decided.text
                copies = {"cropped 10% a side": side_crop(seized, 0.10), "cropped 10%": centre_crop(seized, 0.10),
                          "framed": border(seized)}
                caught = {}
                for name, copy in copies.items():
                    answer_deadline = time.monotonic() + 15
                    while True:
                        answer = await stub.Screen(pb.ScreenRequest(image=jpeg_of(copy)))
                        if answer.matches or time.monotonic() > answer_deadline:
                            break
                        await asyncio.sleep(0.1)
                    caught[name] = answer
                other = await stub.Screen(pb.ScreenRequest(image=jpeg_of(unrelated)))
                info_after = await stub.GetModelInfo(pb.GetModelInfoRequest())
                return info, first, caught, other, info_after

        info, first, caught, other, info_after = asyncio.run(go())
    assert info.embedding.startswith("lite2-") and 0.5 < info.embedding_threshold < 1.0
    assert first.verdict == pb.VERDICT_REVIEW and first.decided_by == "image-level head" and not first.matches
    for name, answer in caught.items():
        (match,) = answer.matches
        assert (match.bank, match.label, match.reference_id) == ("confirmed", "ivory", "L-9"), name
        assert answer.decided_by == "known image" or answer.verdict == pb.VERDICT_REVIEW, name
        if name.startswith("cropped"):  # the embedding alone: REVIEW at most, whatever the bank's action
            assert match.signal == "embedding" and match.similarity >= info.embedding_threshold, (name, match)
            assert match.action == pb.VERDICT_REVIEW and answer.verdict == pb.VERDICT_REVIEW, name
    framed = caught["framed"]
    assert framed.matches[0].signal.startswith("pdq"), "inside its white frame, the photo's PDQ is the original's"
    assert framed.verdict == pb.VERDICT_FLAG and framed.matches[0].action == pb.VERDICT_FLAG
    assert not other.matches and other.verdict == pb.VERDICT_REVIEW
    assert [(b.name, b.entries, b.embeddings) for b in info_after.banks] == [("confirmed", 1, 1)]
