"""The screening server with --review-queue, against the real review service: what needs a person
arrives there, in the background; a review service that is down or stuck never holds up an
answer, and what cannot wait is dropped and counted."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request

import grpc
import pytest

from tests.support.server_process import ServerProcess
from tests.support.eager import eager_weights
from tests.support.images import jpeg
from tests.support.ports import free_port
from tests.support.review import review_service
from tests.support.servers import in_process_server, small_config
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def eager(untrained_weights, tmp_path_factory):
    return eager_weights(untrained_weights, tmp_path_factory.mktemp("eager"))


def feed_count(metrics_port: int, outcome: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    found = re.findall(rf'^wildscreen_review_feed_total\{{outcome="{outcome}"\}} (\S+)$', text, re.M)
    return float(found[0]) if found else 0.0


def wait_for(condition, timeout_s: float = 60, what: str = "the condition"):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def screen(target: str, request_id: str, image: bytes) -> pb.ScreenResponse:
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.ScreeningStub(channel).Screen(pb.ScreenRequest(request_id=request_id, image=image), timeout=60)


def test_results_that_need_a_person_arrive_in_the_review_queue(eager, tmp_path):
    metrics_port = free_port()
    with review_service(tmp_path / "review") as service, \
            ServerProcess(eager, "--review-queue", service.url, "--metrics-port", str(metrics_port)) as server:
        answers = {rid: screen(server.target, rid, jpeg(seed=i)) for i, rid in enumerate(("listing-7", "listing-8"))}
        assert all(a.verdict == pb.VERDICT_REVIEW for a in answers.values())
        screen(server.target, "listing-7", jpeg(seed=0))  # the same image and request id again: one item
        wait_for(lambda: feed_count(metrics_port, "sent") == 3, what="three posts")
        items = {i.request_id: i for i in service.store.page()}
        assert sorted(items) == ["listing-7", "listing-8"]
        for rid, answer in answers.items():
            item = items[rid]
            assert item.listing_id == rid and item.verdict == "REVIEW" and item.model_version == answer.model.version
            assert (item.width, item.height) == (answer.image_width, answer.image_height)
            assert len(item.detections) == len(answer.detections) > 0
            assert {t["label"]: t["review_threshold"] for t in item.thresholds} == \
                   {t.label: pytest.approx(t.review_threshold) for t in answer.thresholds}
        assert feed_count(metrics_port, "failed") == feed_count(metrics_port, "dropped") == 0


def test_screening_answers_while_the_review_service_is_down(eager):
    metrics_port = free_port()
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with ServerProcess(eager, "--review-queue", down, "--metrics-port", str(metrics_port), "--log-format", "text") as server:
        answers = [screen(server.target, f"listing-{i}", jpeg(seed=i)) for i in range(3)]
        assert all(a.verdict == pb.VERDICT_REVIEW for a in answers)
        wait_for(lambda: feed_count(metrics_port, "failed") == 3, what="three failed posts")
        assert server.health() == 1  # SERVING
        assert screen(server.target, "after", jpeg(seed=9)).verdict == pb.VERDICT_REVIEW
        assert "could not send a result to the review service" in server.logs()


def test_a_stuck_review_service_never_holds_up_an_answer_and_a_full_queue_drops(eager):
    """A review service that accepts connections and never answers: the one post in flight hangs,
    one result waits (max pending 1), the rest are dropped; every screening call answers."""
    with socket.socket() as stuck:
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(8)  # never accepted: the kernel completes the handshake, nobody replies
        config = small_config(eager, review_queue=f"http://127.0.0.1:{stuck.getsockname()[1]}",
                              review_queue_max_pending=1, review_queue_timeout_s=120)

        async def calls():
            async with in_process_server(config) as (server, stub):
                feed = server.review_feed
                first = await stub.Screen(pb.ScreenRequest(request_id="first", image=jpeg(seed=0)), timeout=60)
                assert await asyncio.to_thread(feed.wait_until, lambda f: f.in_flight == 1, 30)
                more = await asyncio.gather(*(stub.Screen(pb.ScreenRequest(request_id=f"more-{i}", image=jpeg(seed=i + 1)),
                                                          timeout=60) for i in range(3)))
                return first, more, feed.pending, dict(feed.counts), \
                    server.metrics.registry.get_sample_value("wildscreen_review_feed_total", {"outcome": "dropped"})

        first, more, pending, counts, dropped_metric = asyncio.run(calls())
    assert [a.verdict for a in (first, *more)] == [pb.VERDICT_REVIEW] * 4
    assert pending == 1 and counts == {"dropped": 2} and dropped_metric == 2
