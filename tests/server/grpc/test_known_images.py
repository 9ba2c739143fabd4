"""Known-image matching in a running server, over real gRPC: a banked photo comes back raised to its
bank's action with the match in the answer, whatever the model says; an entry added or removed
while the server runs reaches matching within the poll interval, with no restart."""

from __future__ import annotations

import asyncio
import time

import cv2
import pytest

from server.core.errors import ModelError
from server.core.pdq import hash_image
from server.grpc.app import WildscreenServer
from server.review.banks import BankStore, EntryInput
from server.review.database import connect, default_url
from tests.support.images import jpeg_of, textured_photo
from tests.support.servers import in_process_server, small_config
from wildscreen.v1 import screening_pb2 as pb


@pytest.fixture()
def banks(tmp_path):
    url = default_url(tmp_path)
    engine = connect(url)  # what wildscreen-review does at start: the bank tables exist
    store = BankStore(engine)
    store.create("acme-confirmed", "FLAG", "acme")
    store.create("partner-cases", "REVIEW", "partner")
    yield url, store
    engine.dispose()


def test_a_banked_photo_is_caught_again_and_new_entries_arrive_without_a_restart(untrained_weights, banks):
    url, store = banks
    seized, later, unrelated = textured_photo(1), textured_photo(2), textured_photo(3)
    store.add("acme-confirmed", EntryInput(hash_image(seized).hex, "ivory", "C-123"), by="ana")

    async def go():
        config = small_config(untrained_weights, banks_database_url=url, banks_poll_s=0.1)
        async with in_process_server(config) as (server, stub):
            copies = [jpeg_of(seized, 30), jpeg_of(cv2.resize(seized, (240, 180))), jpeg_of(cv2.flip(seized, 1)),
                      jpeg_of(cv2.rotate(seized, cv2.ROTATE_90_CLOCKWISE))]
            answers = [await stub.Screen(pb.ScreenRequest(image=c)) for c in copies]
            clear = await stub.Screen(pb.ScreenRequest(image=jpeg_of(unrelated)))
            info = await stub.GetModelInfo(pb.GetModelInfoRequest())

            # Added while the server runs: caught within the poll interval.
            store.add("partner-cases", EntryInput(hash_image(later).hex, "known_trafficking_image", "P-9"), by="import")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                fresh = await stub.Screen(pb.ScreenRequest(image=jpeg_of(later)))
                if fresh.matches:
                    break
                await asyncio.sleep(0.1)
            # Removed (a reversed decision): no longer matched.
            store.remove("acme-confirmed", hash_image(seized).hex, by="ana")
            while time.monotonic() < deadline:
                gone = await stub.Screen(pb.ScreenRequest(image=jpeg_of(seized)))
                if not gone.matches:
                    break
                await asyncio.sleep(0.1)
            return answers, clear, info, fresh, gone

    answers, clear, info, fresh, gone = asyncio.run(go())
    for answer in answers:  # re-encoded at q30, halved, mirrored, turned: each still the banked photo
        assert answer.verdict == pb.VERDICT_FLAG and answer.decided_by == "known image"
        (match,) = answer.matches
        assert (match.bank, match.label, match.reference_id, match.action, match.signal) == (
            "acme-confirmed", "ivory", "C-123", pb.VERDICT_FLAG, "pdq")
        assert match.distance <= 31 and match.added.startswith("20")
    assert clear.verdict == pb.VERDICT_CLEAR and not clear.matches
    assert {(b.name, b.action, b.entries) for b in info.banks} == {
        ("acme-confirmed", pb.VERDICT_FLAG, 1), ("partner-cases", pb.VERDICT_REVIEW, 0)}
    assert fresh.verdict == pb.VERDICT_REVIEW and fresh.matches[0].reference_id == "P-9"
    assert not gone.matches and gone.verdict == pb.VERDICT_CLEAR


def test_a_banks_database_without_bank_tables_is_refused_at_start(untrained_weights, tmp_path):
    empty = f"sqlite:///{tmp_path / 'nothing.sqlite3'}"
    with pytest.raises(ModelError, match="has no tables bank_entries, banks: start wildscreen-review on it once"):
        WildscreenServer(small_config(untrained_weights, banks_database_url=empty))


def test_a_banks_database_not_migrated_to_the_embedding_columns_is_refused_with_the_fix(untrained_weights, tmp_path):
    from sqlalchemy import create_engine

    from server.review.database import upgrade

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    old = create_engine(url)
    upgrade(old, "0005")  # what an older wildscreen-review left behind
    old.dispose()
    with pytest.raises(ModelError, match="from an older wildscreen-review: start the new one on it once"):
        WildscreenServer(small_config(untrained_weights, banks_database_url=url))
