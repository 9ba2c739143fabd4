"""Issue 22's loop end to end, over real HTTP and real gRPC: a reviewer confirms a flagged photo in the
workbench, and a re-upload of it (re-encoded, halved, mirrored) comes back FLAG from a running screening
server with the match in the answer, without a restart; undoing the decision takes the photo back out."""

from __future__ import annotations

import asyncio
import json
import time

import cv2
import httpx

from server.review.accounts import LOCAL
from tests.support.images import jpeg_of, textured_photo
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
