"""The backfill on a real local Ray: its rows say what the in-process server says for the same
images, a broken image is an error row beside good ones, and a rerun screens only what is new."""

from __future__ import annotations

import asyncio
import os

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is the optional `backfill` extra (in `dev`); not installed here")
pq = pytest.importorskip("pyarrow.parquet")

from server.backfill.backfill import BackfillOptions, backfill, main  # noqa: E402
from server.core.detections import Detections  # noqa: E402
from server.core.screening import ScreenJob, Screener  # noqa: E402
from tests.support.agreement import LOW_FLOOR, finds_again  # noqa: E402
from tests.support.images import broken_jpeg, scenes  # noqa: E402
from tests.support.servers import small_config  # noqa: E402
from tests.support.synthetic import generate  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # a sandbox without shared memory or sockets for Ray
        pytest.skip(f"a local Ray instance could not start here: {exc}")
    yield
    ray.shutdown()


def write_images(folder, count: int, seed: int) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    images = {f"shapes/{seed}-{i:02d}.jpg": cv2.imencode(".jpg", image)[1].tobytes()
              for i, (image, _) in enumerate(generate(count, size=160, seed=seed, negatives=2))}
    for name, data in images.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return images


def in_process(weights, images: dict[str, bytes]) -> dict:
    """What the server's core answers for each image, at the same listing floor."""
    async def go():
        screener = Screener(small_config(weights, max_batch_size=4).core)
        await screener.load()
        try:
            return {k: await screener.screen(ScreenJob(k, v, min_confidence=LOW_FLOOR)) for k, v in images.items()}
        finally:
            await screener.close()

    return asyncio.run(go())


def as_detections(row: dict) -> Detections:
    d = row["detections"]
    if not d:
        return Detections.empty()
    return Detections(np.array([[x["x_min"], x["y_min"], x["x_max"], x["y_max"]] for x in d], np.float32),
                      np.array([x["confidence"] for x in d], np.float32), np.array([x["class_id"] for x in d], np.int64))


def rows_of(out) -> dict[str, dict]:
    rows = pq.ParquetDataset(out).read().to_pylist()
    assert len({r["id"] for r in rows}) == len(rows), "an id was written twice"
    return {r["id"]: r for r in rows}


def test_backfill_agrees_with_the_server_fails_bad_images_alone_and_resumes(local_ray, trained_weights, tmp_path):
    folder, out = tmp_path / "catalogue", tmp_path / "results"
    good = write_images(folder, 14, seed=1)
    for i, data in enumerate(scenes()):
        good[f"scene-{i}.jpg"] = data
        (folder / f"scene-{i}.jpg").write_bytes(data)
    (folder / "not-an-image.png").write_bytes(b"this is text, not a PNG")
    (folder / "broken.jpg").write_bytes(broken_jpeg(scenes()[0]))
    options = BackfillOptions(source=str(folder), out=str(out), weights=str(trained_weights), backend="torch",
                              batch_size=4, rows_per_block=6, min_confidence=LOW_FLOOR)

    first = backfill(options)
    rows = rows_of(out)
    assert first.listed == first.screened == len(good) + 2 and first.skipped == 0
    assert set(rows) == set(good) | {"not-an-image.png", "broken.jpg"}

    # The bad ones: an error row each, no verdict; the others in their blocks are fine.
    assert "not a JPEG, PNG" in rows["not-an-image.png"]["error"] and rows["not-an-image.png"]["verdict"] is None
    assert "corrupt" in rows["broken.jpg"]["error"] and rows["broken.jpg"]["image_sha256"]
    assert all(rows[k]["error"] is None for k in good)

    # Path vs path: the same verdicts, sizes and detections as the server's core on the same bytes.
    reference = in_process(trained_weights, good)
    keys = sorted(good)
    assert [rows[k]["verdict"] for k in keys] == [reference[k].verdict.name for k in keys]
    assert [(rows[k]["width"], rows[k]["height"]) for k in keys] == [(reference[k].width, reference[k].height) for k in keys]
    ours, theirs = [as_detections(rows[k]) for k in keys], [reference[k].detections for k in keys]
    tight = dict(top=5, share=0.0, min_iou=0.98, relative_confidence=0.01, absolute_confidence=0.002)
    assert finds_again(theirs, ours, **tight) == [] and finds_again(ours, theirs, **tight) == []
    manifest = reference[keys[0]].model
    assert {(r["model_version"], r["model_sha256"]) for r in rows.values()} == {(manifest.version, manifest.sha256)}
    assert rows[keys[0]]["thresholds"] == [
        {"label": p.label, "class_id": p.id, "review_threshold": p.review_threshold, "flag_threshold": p.flag_threshold}
        for p in reference[keys[0]].thresholds]

    # Rerun after the catalogue grew, through the command line: only the new images are screened and
    # appended; the first run's files stay as they were.
    files_before = {p.name: p.read_bytes() for p in out.glob("*.parquet")}
    added = write_images(folder, 6, seed=2)
    assert main([str(folder), "--out", str(out), "--weights", str(trained_weights), "--backend", "torch",
                 "--batch-size", "4", "--min-confidence", str(LOW_FLOOR)]) == 0
    after = rows_of(out)
    assert set(after) == set(rows) | set(added)
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet") if p.name in files_before} == files_before
    assert all(after[k] == rows[k] for k in rows)
    assert all(after[k]["error"] is None and after[k]["verdict"] in ("CLEAR", "REVIEW", "FLAG") for k in added)


def test_queue_sends_review_and_flag_rows_once_and_totals_show_on_a_rerun(local_ray, untrained_weights, tmp_path, capsys):
    from tests.support.eager import eager_weights
    from tests.support.review import review_service

    weights = eager_weights(untrained_weights, tmp_path / "eager")  # every image with a detection: REVIEW
    folder, out = tmp_path / "catalogue", tmp_path / "results"
    write_images(folder, 4, seed=3)
    (folder / "broken.jpg").write_bytes(broken_jpeg(scenes()[0]))
    args = [str(folder), "--out", str(out), "--weights", str(weights), "--backend", "torch", "--batch-size", "4"]
    with review_service(tmp_path / "review") as service:
        assert main([*args, "--queue", service.url]) == 0
        needing = [r for r in rows_of(out).values() if r["verdict"] in ("REVIEW", "FLAG")]
        assert needing, "the eager model sends images with any detection to review"
        first = capsys.readouterr().out
        assert f"{len(needing)} REVIEW/FLAG rows offered, {len(needing)} new items" in first
        queued = service.store.page(limit=100)
        assert sorted(i.request_id for i in queued) == sorted(r["id"] for r in needing)
        assert all(i.listing_id == "shapes" and i.model_version == "v0" for i in queued)

        # Nothing new in the catalogue: the totals of the output still show, and nothing is queued twice.
        assert main([*args, "--queue", service.url]) == 0
        again = capsys.readouterr().out
        assert "screened now 0" in again and "in the output now: nothing new" not in again
        assert f"{len(needing)} REVIEW/FLAG rows offered, 0 new items, {len(needing)} already queued" in again
        assert len(service.store.page(limit=100)) == len(needing)


def test_ray_is_quiet_unless_asked(monkeypatch):
    """Ray's INFO lines, its core worker's ERROR-level shutdown messages and the actors' output stay in
    Ray's own logs by default (they read like failures of the run); --verbose brings them back."""
    from server.backfill import backfill as module

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_BACKEND_LOG_LEVEL", "info")  # so that the test's end puts back what was there before
    monkeypatch.delenv("RAY_BACKEND_LOG_LEVEL")
    module.start_ray(2)
    quiet = calls.pop()
    assert quiet["log_to_driver"] is False and quiet["logging_level"] >= 30 and quiet["num_cpus"] == 2
    assert os.environ["RAY_BACKEND_LOG_LEVEL"] == "fatal"
    module.start_ray(2, verbose=True)
    assert "log_to_driver" not in calls.pop()
