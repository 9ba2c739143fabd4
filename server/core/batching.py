"""Dynamic batching: requests from all clients gathered into one forward pass.

A batch closes when it holds `max_batch_size` items or `max_delay_ms` has passed since its first
item arrived, whichever comes first, and at once when nothing more is on its way (`incoming`
says how many items are still being decoded): a lone request never waits for company. While a
batch runs, new items queue up, so under load batches fill by themselves.

The model thread forms the batches itself, from a thread-safe queue, and hands results back to
the event loop: between two batches it never waits for the event loop, which under a flood of
requests (most of them refused) is busy. The queue is bounded (a full queue answers Overloaded at
once), and an item whose caller has gone (cancelled) or whose deadline would pass before its batch
is done is dropped before it reaches the model: it never holds a batch slot.

Side by side (ONNX Runtime on the CPU): with `side_by_side` runners, that many model threads take
batches from the one queue, each running its batch on its own runner (a model copy on its share of
the cores), so under load the cores work on several batches at once, which beats one batch on all
of them (one ONNX Runtime thread per core wastes less in synchronisation). A batch that has the
model to itself (nothing else running, nothing queued) goes to `run_batch`, on all the cores: a
lone request is as fast as without side-by-side runners.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from server.core.errors import DeadlineExpired, InferenceFailed, NotReady, Overloaded

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
_STOP = object()


@dataclass(frozen=True)
class BatchInfo:
    size: int
    queue_ms: float
    inference_ms: float


@dataclass(eq=False)
class _Pending(Generic[Item, Result]):
    item: Item
    request_id: str
    deadline: float | None
    """time.monotonic() after which the caller no longer wants the answer."""
    future: asyncio.Future[tuple[Result, BatchInfo]]
    enqueued: float = field(default_factory=time.monotonic)

    def expired(self, now: float, expected_run_s: float) -> bool:
        return self.deadline is not None and now + expected_run_s >= self.deadline


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    dropped: int = 0
    rejected: int = 0

    @property
    def mean_batch_size(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class DynamicBatcher(Generic[Item, Result]):
    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Result]],
        max_batch_size: int,
        max_delay_ms: float,
        max_queue_size: int,
        on_batch: Callable[[BatchInfo], None] | None = None,
        incoming: Callable[[], int] | None = None,
        executor: ThreadPoolExecutor | None = None,
        side_by_side: Sequence[Callable[[Sequence[Item]], Sequence[Result]]] = (),
    ) -> None:
        self._run_batch = run_batch
        self._runners = list(side_by_side) or [run_batch]
        """One per model thread: what that thread runs a batch on unless the batch has the model to itself."""
        self._busy = 0  # batches running now
        self._busy_lock = threading.Lock()
        self._incoming = incoming
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_ms / 1000.0
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue_size)
        self._on_batch = on_batch
        # Without side-by-side runners one thread: the model runs one batch at a time, and torch uses
        # all cores inside it. Pass the thread that loaded the model: PyTorch on the CPU runs at half
        # speed in a thread other than the one whose OpenMP team first ran it (measured: 50 ms against
        # 130 ms per image). The first model thread is that one, the others are new.
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        extra = len(self._runners) - 1
        self._extra_executor = ThreadPoolExecutor(max_workers=extra, thread_name_prefix="model") if extra else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[ThreadFuture] = []
        self._closing = False
        self._expected_run_s = 0.0  # moving average of a batch's run time
        self.stats = BatchStats()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def model_threads(self) -> int:
        return len(self._runners)

    @property
    def images_per_second(self) -> float:
        """Recent throughput of the model threads, all of them busy (0 before the first batch)."""
        if not self._expected_run_s or not self.stats.batches:
            return 0.0
        return self.model_threads * self.stats.mean_batch_size / self._expected_run_s

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._threads = [self._executor.submit(self._model_thread, 0)]
        self._threads += [self._extra_executor.submit(self._model_thread, k) for k in range(1, self.model_threads)]

    async def submit(self, item: Item, request_id: str = "", deadline: float | None = None) -> tuple[Result, BatchInfo]:
        """Queue `item`, wait for its batch; raise Overloaded at once when the queue is full."""
        if self._closing or not self._threads:
            raise NotReady("the model is being replaced or the server is shutting down; retry")
        future: asyncio.Future[tuple[Result, BatchInfo]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(item, request_id, deadline, future))
        except queue.Full:
            self.stats.rejected += 1
            raise Overloaded(f"server busy: {self._queue.maxsize} images already queued; retry with backoff") from None
        return await future

    async def close(self) -> None:
        """Stop taking items, finish everything already queued, then stop the model threads."""
        self._closing = True
        if self._threads:
            await asyncio.get_running_loop().run_in_executor(None, self._queue.put, _STOP)
            await asyncio.gather(*(asyncio.wrap_future(t) for t in self._threads))
        self._executor.shutdown(wait=True)
        if self._extra_executor is not None:
            self._extra_executor.shutdown(wait=True)

    # --- the model thread ----------------------------------------------------------------------
    def _take_batch(self) -> list[_Pending[Item, Result]] | None:
        first = self._queue.get()
        if first is _STOP:
            self._queue.put(_STOP)  # for the other model threads
            return None
        batch = [first]
        close_at = time.monotonic() + self.max_delay_s
        while len(batch) < self.max_batch_size:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                remaining = close_at - time.monotonic()
                if remaining <= 0 or (self._incoming is not None and self._incoming() == 0):
                    break
                try:
                    pending = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if pending is _STOP:
                self._queue.put(_STOP)  # seen again once this batch is done
                break
            batch.append(pending)
        return batch

    def _model_thread(self, worker: int) -> None:
        while (collected := self._take_batch()) is not None:
            try:
                self._run(collected, worker)
            except Exception:  # a bug here must not stop the model thread: fail this batch, go on
                log.exception("batch handling failed", extra={"fields": {"request_ids": [p.request_id for p in collected]}})
                self._loop.call_soon_threadsafe(self._fail, collected)

    def _run(self, collected: list[_Pending[Item, Result]], worker: int) -> None:
        start = time.monotonic()
        expired = [p for p in collected if not p.future.done() and p.expired(start, self._expected_run_s)]
        batch = [p for p in collected if not p.future.done() and p not in expired]
        self.stats.dropped += len(collected) - len(batch)
        if expired:
            self._loop.call_soon_threadsafe(self._expire, expired)
        if not batch:
            return
        with self._busy_lock:
            alone = self._busy == 0 and self._queue.empty()
            self._busy += 1
        run_batch = self._run_batch if alone else self._runners[worker]
        try:
            results = run_batch([p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
        except Exception:
            log.exception("inference failed", extra={"fields": {"request_ids": [p.request_id for p in batch], "batch_size": len(batch)}})
            self._loop.call_soon_threadsafe(self._fail, batch)
            return
        finally:
            with self._busy_lock:
                self._busy -= 1
        done = time.monotonic()
        self._expected_run_s = 0.8 * self._expected_run_s + 0.2 * (done - start)
        self.stats.batches += 1
        self.stats.items += len(batch)
        self._loop.call_soon_threadsafe(self._deliver, batch, results, start, done)

    # --- back on the event loop ----------------------------------------------------------------
    @staticmethod
    def _expire(pending: list[_Pending[Item, Result]]) -> None:
        for p in pending:
            if not p.future.done():
                p.future.set_exception(DeadlineExpired("deadline would pass before the model could answer"))

    @staticmethod
    def _fail(pending: list[_Pending[Item, Result]]) -> None:
        for p in pending:
            if not p.future.done():
                p.future.set_exception(InferenceFailed("inference failed for this batch; the server logged it"))

    def _deliver(self, batch: list[_Pending[Item, Result]], results: Sequence[Result], start: float, done: float) -> None:
        for p, result in zip(batch, results):
            if p.future.done():
                continue
            if isinstance(result, Exception):  # this item alone failed (e.g. its JPEG on the GPU)
                p.future.set_exception(result)
            else:
                p.future.set_result((result, BatchInfo(len(batch), (start - p.enqueued) * 1000.0, (done - start) * 1000.0)))
        if self._on_batch is not None:
            self._on_batch(BatchInfo(len(batch), 0.0, (done - start) * 1000.0))
