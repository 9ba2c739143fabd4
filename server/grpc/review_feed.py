"""Forwarding what needs a person to the review service (`--review-queue URL`).

The screening hot path only *offers*: a verdict check and an append to a bounded queue, never a
wait. One daemon thread posts each item with the client's own `ReviewQueue` (the same multipart
POST and the same result line as `wildscreen screen --queue`), so a review service that is slow,
down or busy with its database costs screening nothing. A full queue drops the new item and
counts it; a failed post is logged and counted, never fatal. Items still waiting when the server
stops get its grace period to go out; what is left after that is logged as lost.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from pathlib import Path

from server.core.embedding import ImageEmbedding, pack, to_text
from server.grpc.metrics import GrpcMetrics
from server.grpc.settings import GrpcSettings
from wildscreen.queue import NEEDS_A_PERSON, ReviewQueue, result_line
from wildscreen.v1 import screening_pb2 as pb

log = logging.getLogger(__name__)

LOG_EVERY_FAILURES = 100
"""After the first failure in a row, one warning per this many: a service down for an hour must
not fill the log with a line per flagged image."""


class ReviewFeed:
    def __init__(self, url: str, api_key: str | None = None, max_pending: int = 64, max_pending_bytes: int = 256 << 20,
                 timeout_s: float = 10.0, metrics: GrpcMetrics | None = None) -> None:
        self.url = url
        self.queue = ReviewQueue(url, api_key, timeout=timeout_s)
        self.max_pending, self.max_pending_bytes = max_pending, max_pending_bytes
        self.metrics = metrics
        self.counts: Counter[str] = Counter()
        """sent, dropped, failed: what became of every result offered that needed a person."""
        self.in_flight = 0
        self._items: deque[tuple[pb.ScreenRequest, pb.ScreenResponse]] = deque()
        self._pending_bytes = 0
        self._failures_in_a_row = 0
        self._closing = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="review-feed", daemon=True)

    @classmethod
    def from_config(cls, config: GrpcSettings, metrics: GrpcMetrics | None = None) -> ReviewFeed:
        key_file: Path | None = config.review_queue_key_file
        key = key_file.read_text().strip() if key_file else None
        return cls(config.review_queue, key or None, config.review_queue_max_pending,
                   config.review_queue_max_pending_bytes, config.review_queue_timeout_s, metrics)

    def start(self) -> None:
        self._thread.start()
        log.info("forwarding REVIEW and FLAG results", extra={"fields": {"review_queue": self.url}})

    @property
    def pending(self) -> int:
        return len(self._items)

    def offer(self, request: pb.ScreenRequest, response: pb.ScreenResponse, embedding: ImageEmbedding | None = None) -> bool:
        """Queue a screened result for the review service if it needs a person; never blocks.
        False when it needs none or was dropped (the queue full, or the server stopping). The image's
        `embedding` goes with it (not in the answer): a confirm banks it beside the PDQ hash."""
        if pb.Verdict.Name(response.verdict) not in NEEDS_A_PERSON:
            return False
        size = len(request.image)
        with self._changed:
            if self._closing or len(self._items) >= self.max_pending or self._pending_bytes + size > self.max_pending_bytes:
                self._count("dropped")
                return False
            self._items.append((request, response, embedding))
            self._pending_bytes += size
            self._changed.notify_all()
        return True

    def wait_until(self, condition, timeout_s: float) -> bool:
        """Wait until condition(self) holds (checked whenever the feed changes); for tests and shutdown."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(self), timeout_s)

    def close(self, timeout_s: float) -> None:
        """Let what is waiting go out within timeout_s, then stop; what is left is logged as lost."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        lost = len(self._items) + self.in_flight
        if lost:
            log.warning("stopped with results not yet sent to the review service",
                        extra={"fields": {"lost": lost, "review_queue": self.url}})
        if not self._thread.is_alive():
            self.queue.close()

    # the worker thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._items or self._closing)
                if not self._items:
                    return
                request, response, embedding = self._items.popleft()
                self._pending_bytes -= len(request.image)
                self.in_flight = 1
                self._changed.notify_all()
            outcome = self._send(request, response, embedding)
            with self._changed:
                self.in_flight = 0
                self._count(outcome)
                self._changed.notify_all()

    def _send(self, request: pb.ScreenRequest, response: pb.ScreenResponse, embedding: ImageEmbedding | None) -> str:
        line = result_line(response)
        if embedding is not None:
            line["embedding"] = {"model": embedding.model, "vector": to_text(pack(embedding.vector))}
        try:
            # The request id is the caller's listing or upload id: it names the item and groups it.
            # The file name is fixed: a caller's request id has no business in a multipart header.
            self.queue.submit_bytes(request.image, "image", line, request.request_id)
        except RuntimeError as exc:  # unreachable, or refused: the service's own words
            return self._failed(str(exc))
        except Exception:  # a bug here must not end forwarding
            log.exception("forwarding a result to the review service failed")
            return self._failed("unexpected error")
        if self._failures_in_a_row:
            log.info("the review service takes results again",
                     extra={"fields": {"review_queue": self.url, "failed_in_a_row": self._failures_in_a_row}})
        self._failures_in_a_row = 0
        return "sent"

    def _failed(self, why: str) -> str:
        self._failures_in_a_row += 1
        if self._failures_in_a_row % LOG_EVERY_FAILURES == 1:
            log.warning("could not send a result to the review service; screening goes on",
                        extra={"fields": {"review_queue": self.url, "why": why, "failed_in_a_row": self._failures_in_a_row,
                                          "failed": self.counts["failed"] + 1, "dropped": self.counts["dropped"]}})
        return "failed"

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        if self.metrics is not None:
            self.metrics.review_feed.labels(outcome).inc()
