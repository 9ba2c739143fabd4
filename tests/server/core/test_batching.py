import asyncio
import threading
import time

import pytest

from server.core.batching import DynamicBatcher
from server.core.errors import DeadlineExpired, InferenceFailed, NotReady, Overloaded


def run(coro):
    return asyncio.run(coro)


class Recorder:
    """A run_batch that records the batches it saw; optionally slow, or failing on a marker item."""

    def __init__(self, delay_s: float = 0.0, gate: threading.Event | None = None) -> None:
        self.batches: list[list] = []
        self.delay_s = delay_s
        self.gate = gate
        self.entered = threading.Event()
        """Set when a batch has reached the model: tests wait on it instead of sleeping."""

    def __call__(self, items):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.delay_s)
        self.batches.append(list(items))
        if "boom" in items:
            raise RuntimeError("model exploded")
        return [f"done:{x}" for x in items]


def test_concurrent_items_share_a_batch_and_keep_their_results():
    async def main():
        rec = Recorder()
        batcher = DynamicBatcher(rec, max_batch_size=8, max_delay_ms=50, max_queue_size=64)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i, str(i)) for i in range(8)))
        await batcher.close()
        return rec, results

    rec, results = run(main())
    assert [r for r, _ in results] == [f"done:{i}" for i in range(8)]
    assert len(rec.batches) == 1 and results[0][1].size == 8


def test_batch_closes_at_max_batch_size():
    async def main():
        rec = Recorder()
        batcher = DynamicBatcher(rec, max_batch_size=3, max_delay_ms=1000, max_queue_size=64)
        batcher.start()
        start = time.monotonic()
        await asyncio.gather(*(batcher.submit(i) for i in range(6)))
        elapsed = time.monotonic() - start
        await batcher.close()
        return rec, elapsed

    rec, elapsed = run(main())
    assert [len(b) for b in rec.batches] == [3, 3]
    assert elapsed < 0.9  # full batches never wait for the delay


def test_batch_closes_after_max_delay():
    async def main():
        rec = Recorder()
        batcher = DynamicBatcher(rec, max_batch_size=8, max_delay_ms=30, max_queue_size=64)
        batcher.start()
        # "a" alone: its batch must close after the delay, without a second item (else this hangs).
        await asyncio.wait_for(batcher.submit("a"), timeout=10)
        second = await batcher.submit("b")
        await batcher.close()
        return rec, second

    rec, second = run(main())
    assert rec.batches == [["a"], ["b"]]


def test_full_queue_answers_overloaded_at_once():
    async def main():
        gate = threading.Event()
        recorder = Recorder(gate=gate)
        batcher = DynamicBatcher(recorder, max_batch_size=1, max_delay_ms=0, max_queue_size=2)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit("running"))
        # Until it is taken out of the queue and blocked in the model.
        assert await asyncio.get_running_loop().run_in_executor(None, recorder.entered.wait, 10)
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.submit("one too many")
        gate.set()
        await asyncio.gather(running, *queued)
        await batcher.close()
        return batcher.stats.rejected

    assert run(main()) == 1


def test_cancelled_and_expired_items_never_reach_the_model():
    async def main():
        gate = threading.Event()
        rec = Recorder(gate=gate)
        batcher = DynamicBatcher(rec, max_batch_size=8, max_delay_ms=0, max_queue_size=16)
        batcher.start()
        blocker = asyncio.ensure_future(batcher.submit("blocker"))
        assert await asyncio.get_running_loop().run_in_executor(None, rec.entered.wait, 10)  # blocked in the model
        cancelled = asyncio.ensure_future(batcher.submit("cancelled"))
        expired = asyncio.ensure_future(batcher.submit("expired", deadline=time.monotonic() + 0.01))
        kept = asyncio.ensure_future(batcher.submit("kept"))
        await asyncio.sleep(0.05)  # the 10 ms deadline has passed
        cancelled.cancel()
        gate.set()
        await blocker
        assert (await kept)[0] == "done:kept"
        with pytest.raises(DeadlineExpired):
            await expired
        await batcher.close()
        return rec

    rec = run(main())
    seen = [x for b in rec.batches for x in b]
    assert "cancelled" not in seen and "expired" not in seen and "kept" in seen


def test_an_exception_fails_only_its_batch():
    async def main():
        rec = Recorder()
        batcher = DynamicBatcher(rec, max_batch_size=2, max_delay_ms=20, max_queue_size=16)
        batcher.start()
        bad = await asyncio.gather(batcher.submit("boom"), batcher.submit("x"), return_exceptions=True)
        good = await batcher.submit("y")
        await batcher.close()
        return bad, good

    bad, good = run(main())
    assert all(isinstance(e, InferenceFailed) for e in bad)
    assert good[0] == "done:y"


def test_close_finishes_queued_items_then_refuses_new_ones():
    async def main():
        batcher = DynamicBatcher(Recorder(delay_s=0.02), max_batch_size=2, max_delay_ms=0, max_queue_size=16)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(6)]
        await asyncio.sleep(0)
        await batcher.close()
        results = [f.result()[0] for f in pending]
        with pytest.raises(NotReady):
            await batcher.submit("late")
        return results

    assert run(main()) == [f"done:{i}" for i in range(6)]


def test_a_lone_item_does_not_wait_when_nothing_is_coming():
    async def main():
        incoming = {"n": 0}
        batcher = DynamicBatcher(Recorder(), max_batch_size=8, max_delay_ms=500, max_queue_size=16, incoming=lambda: incoming["n"])
        batcher.start()
        start = time.monotonic()
        await batcher.submit("alone")
        alone = time.monotonic() - start
        incoming["n"] = 1  # one more is being decoded: worth waiting for
        start = time.monotonic()
        later = asyncio.ensure_future(batcher.submit("first"))
        await asyncio.sleep(0.1)
        incoming["n"] = 0
        await batcher.submit("second")
        await later
        await batcher.close()
        return alone, batcher

    alone, batcher = run(main())
    assert alone < 0.45  # not the 500 ms a batch may wait for an image being decoded
    assert batcher.stats.batches == 2  # "first" waited and shared its batch with "second"


def test_expiry_among_array_items_does_not_stop_the_model_thread():
    import numpy as np

    async def main():
        batcher = DynamicBatcher(lambda items: [float(x.sum()) for x in items], max_batch_size=8, max_delay_ms=0, max_queue_size=16)
        batcher.start()
        await batcher.submit(np.ones(3))
        expired = batcher.submit(np.ones((2, 2)), deadline=time.monotonic() - 1)
        kept = batcher.submit(np.full((2, 2), 2.0))
        results = await asyncio.gather(expired, kept, return_exceptions=True)
        after = await batcher.submit(np.ones(4))
        await batcher.close()
        return results, after

    (expired, kept), after = run(main())
    assert isinstance(expired, DeadlineExpired) and kept[0] == 8.0 and after[0] == 4.0


def test_side_by_side_runners_take_batches_while_one_is_running_and_a_lone_batch_gets_run_batch():
    async def main():
        gate = threading.Event()
        whole = Recorder(gate=gate)  # the model on all cores: blocked until the test lets it go
        copies = [Recorder(), Recorder()]
        batcher = DynamicBatcher(whole, max_batch_size=1, max_delay_ms=0, max_queue_size=16, side_by_side=copies)
        batcher.start()
        assert batcher.model_threads == 2
        lone = asyncio.ensure_future(batcher.submit("lone"))
        assert await asyncio.get_running_loop().run_in_executor(None, whole.entered.wait, 10)
        # "lone" holds a model thread; the other one answers while it is still running.
        second = await asyncio.wait_for(batcher.submit("second"), timeout=10)
        assert not lone.done()
        gate.set()
        first = await lone
        await batcher.close()
        return whole, copies, first, second

    whole, copies, first, second = run(main())
    assert first[0] == "done:lone" and second[0] == "done:second"
    assert whole.batches == [["lone"]]
    assert [b for c in copies for b in c.batches] == [["second"]]


def test_close_with_side_by_side_runners_finishes_everything_and_stops_every_thread():
    async def main():
        copies = [Recorder(delay_s=0.01), Recorder(delay_s=0.01), Recorder(delay_s=0.01)]
        batcher = DynamicBatcher(Recorder(delay_s=0.01), max_batch_size=2, max_delay_ms=0, max_queue_size=64, side_by_side=copies)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(20)]
        await asyncio.sleep(0)
        await asyncio.wait_for(batcher.close(), timeout=20)  # hangs if a model thread never sees the stop
        return [f.result()[0] for f in pending], batcher

    results, batcher = run(main())
    assert results == [f"done:{i}" for i in range(20)]
    assert batcher.stats.items == 20
