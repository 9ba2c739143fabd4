"""The screening core in process, without any protocol: admission, validation, deadlines,
and a result that names its model and thresholds."""

import asyncio
import time

import pytest

from server.core.errors import DeadlineExpired, InvalidInput, Overloaded
from server.core.screening import ScreenJob, Screener
from tests.support.images import jpeg
from tests.support.servers import small_config


def run_with_screener(weights, body, **config):
    async def go():
        screener = Screener(small_config(weights, **config).core)
        await screener.load()
        try:
            return await body(screener)
        finally:
            await screener.close()

    return asyncio.run(go())


def test_a_result_names_its_model_thresholds_and_size(untrained_weights):
    async def body(screener):
        return await screener.screen(ScreenJob("r1", jpeg(400, 300), overlay="jpeg", classes=("ivory",)))

    result = run_with_screener(untrained_weights, body)
    assert result.request_id == "r1" and result.model.version == "v0"
    assert [p.label for p in result.thresholds] == ["ivory"] and set(result.detections.class_id.tolist()) <= {0}
    assert (result.width, result.height) == (400, 300) and result.overlay.startswith(b"\xff\xd8")
    assert len(result.detection_verdicts) == len(result.detections)


def test_admission_beyond_the_limit_is_refused_at_once_with_a_hint(untrained_weights):
    """max_queue_size + max_batch_size images may be in flight; the rest are refused before any await."""

    async def body(screener):
        outcomes = await asyncio.gather(*(screener.screen(ScreenJob(str(i), jpeg(seed=i))) for i in range(7)), return_exceptions=True)
        return screener.max_in_flight, outcomes

    limit, outcomes = run_with_screener(untrained_weights, body, max_batch_size=1, max_queue_size=2)
    refused = [o for o in outcomes if isinstance(o, Overloaded)]
    assert limit == 3 and len(refused) == 4 and all(o.retry_after_ms > 0 for o in refused)
    assert all(o.model.version == "v0" for o in outcomes if not isinstance(o, Exception))


@pytest.mark.parametrize("job,words", [
    (ScreenJob("a", b"", min_confidence=1.5), "min_confidence"),
    (ScreenJob("b", b"", classes=("unicorn",)), "unknown class"),
    (ScreenJob("c", b"", overlay="gif"), "overlay format"),
    (ScreenJob("d", b""), "empty"),
])
def test_bad_jobs_are_invalid_input(untrained_weights, job, words):
    async def body(screener):
        with pytest.raises(InvalidInput, match=words):
            await screener.screen(job)
        return screener.in_flight

    assert run_with_screener(untrained_weights, body) == 0


def test_a_passed_deadline_is_not_screened(untrained_weights):
    async def body(screener):
        with pytest.raises(DeadlineExpired):
            await screener.screen(ScreenJob("late", jpeg()), deadline=time.monotonic() - 1)

    run_with_screener(untrained_weights, body)
