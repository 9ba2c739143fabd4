"""Dynamic batching: requests from all clients gathered into one forward pass.

A batch closes when it holds `max_batch_size` items or `max_delay_ms` has passed since its first
item arrived, whichever comes first, and at once when nothing more is on its way (`incoming`
says how many items are still being decoded): a lone request never waits for company. While a
batch runs in the model thread, new items queue up, so under load batches fill by themselves.

The queue is bounded (a full queue answers Overloaded at once, memory never grows without bound),
and an item whose caller has gone (cancelled) or whose deadline has passed is dropped before it
reaches the model: it never holds a batch slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from server.errors import DeadlineExpired, InferenceFailed, NotReady, Overloaded

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class BatchInfo:
    size: int
    queue_ms: float
    inference_ms: float


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    request_id: str
    deadline: float | None
    """time.monotonic() after which the caller no longer wants the answer."""
    future: asyncio.Future[tuple[Result, BatchInfo]]
    enqueued: float = field(default_factory=time.monotonic)

    def wanted(self, now: float, expected_run_s: float) -> bool:
        """Still worth running: the caller is there, and its deadline leaves time for the batch."""
        if self.future.done():  # cancelled by the caller
            return False
        if self.deadline is not None and now + expected_run_s >= self.deadline:
            self.future.set_exception(DeadlineExpired("deadline passed while waiting for the model"))
            return False
        return True


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
    ) -> None:
        self._run_batch = run_batch
        self._incoming = incoming
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_ms / 1000.0
        self._queue: asyncio.Queue[_Pending[Item, Result]] = asyncio.Queue(maxsize=max_queue_size)
        self._on_batch = on_batch
        # One thread: the model runs one batch at a time, and torch uses all cores inside it. Pass the
        # thread that loaded the model: PyTorch on the CPU runs at half speed in a thread other than
        # the one whose OpenMP team first ran it (measured: 50 ms against 130 ms per image).
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._expected_run_s = 0.0  # moving average of a batch's run time
        self.stats = BatchStats()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def submit(self, item: Item, request_id: str = "", deadline: float | None = None) -> tuple[Result, BatchInfo]:
        """Queue `item`, wait for its batch; raise Overloaded at once when the queue is full."""
        if self._closing or self._task is None:
            raise NotReady("the model is being replaced or the server is shutting down; retry")
        future: asyncio.Future[tuple[Result, BatchInfo]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(item, request_id, deadline, future))
        except asyncio.QueueFull:
            self.stats.rejected += 1
            raise Overloaded(f"server busy: {self._queue.maxsize} images already queued; retry with backoff") from None
        return await future

    async def close(self) -> None:
        """Stop taking items, finish everything already queued, then stop the loop."""
        self._closing = True
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def _collect(self) -> list[_Pending[Item, Result]]:
        first = await self._queue.get()
        batch = [first]
        close_at = time.monotonic() + self.max_delay_s
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = close_at - time.monotonic()
            if remaining <= 0 or (self._incoming is not None and self._incoming() == 0):
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            collected = await self._collect()
            start = time.monotonic()
            batch = [p for p in collected if p.wanted(start, self._expected_run_s)]
            self.stats.dropped += len(collected) - len(batch)
            try:
                if batch:
                    await self._run(loop, batch, start)
            finally:
                for _ in collected:
                    self._queue.task_done()

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending[Item, Result]], start: float) -> None:
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, [p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
        except Exception:
            ids = [p.request_id for p in batch]
            log.exception("inference failed", extra={"fields": {"request_ids": ids, "batch_size": len(batch)}})
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(InferenceFailed("inference failed for this batch; the server logged it"))
            return
        done = time.monotonic()
        self._expected_run_s = 0.8 * self._expected_run_s + 0.2 * (done - start)
        self.stats.batches += 1
        self.stats.items += len(batch)
        for p, result in zip(batch, results):
            info = BatchInfo(len(batch), (start - p.enqueued) * 1000.0, (done - start) * 1000.0)
            if p.future.done():
                continue
            if isinstance(result, Exception):  # this item alone failed (e.g. its JPEG on the GPU)
                p.future.set_exception(result)
            else:
                p.future.set_result((result, info))
        if self._on_batch is not None:
            self._on_batch(BatchInfo(len(batch), 0.0, (done - start) * 1000.0))
