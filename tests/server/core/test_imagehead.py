"""Model v3's image-level head in the core: the decision over both models, the answer, the overlay,
and the manifests that must be refused. Heads here have fixed weights (a bias per class)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from server.core.errors import ModelError
from server.core.imagehead import heat_box
from server.core.manifest import WeightsStore
from server.core.policy import Verdict
from server.core.screening import ScreenJob, Screener
from tests.support.heads import with_head
from tests.support.images import jpeg
from tests.support.servers import small_config


def screen(weights, *jobs: ScreenJob):
    async def go():
        screener = Screener(small_config(weights).core)
        await screener.load()
        try:
            return [await screener.screen(job) for job in jobs]
        finally:
            await screener.close()

    return asyncio.run(go())


def test_the_head_alone_reaches_review_and_says_so(untrained_weights, tmp_path):
    weights = with_head(untrained_weights, tmp_path, biases={2: 10.0})  # tiger_parts far above 0.5
    (result, only_ivory) = screen(weights, ScreenJob("a", jpeg(96, 64, seed=1), overlay="png"),
                                  ScreenJob("b", jpeg(96, 64, seed=1), classes=("ivory",)))
    assert result.verdict == Verdict.REVIEW and result.decided_by == "image-level head"
    assert result.deciding_class == 2
    scores = dict(zip(result.image_scores.class_ids.tolist(), result.image_scores.scores.tolist()))
    assert scores[2] > 0.99 and all(s < 0.01 for c, s in scores.items() if c != 2)
    assert result.image_verdicts.tolist() == [Verdict.REVIEW if c == 2 else Verdict.CLEAR for c in result.image_scores.class_ids]
    assert [p.label for p in result.image_thresholds] == ["ivory", "pangolin_scales", "tiger_parts", "live_reptile"]
    assert result.overlay  # drawn with the heat layer (see test_overlay for what it looks like)
    # Screening ivory alone leaves the head's tiger out of the answer and the verdict.
    assert only_ivory.verdict == Verdict.CLEAR and only_ivory.image_scores.class_ids.tolist() == [0]


def test_flag_from_the_head_needs_a_flag_threshold(untrained_weights, tmp_path):
    never = with_head(untrained_weights, tmp_path / "a", biases={0: 10.0}, review=0.5, flag=None)
    flags = with_head(untrained_weights, tmp_path / "b", biases={0: 10.0}, review=0.5, flag=0.9)
    quiet = with_head(untrained_weights, tmp_path / "c", biases={}, review=0.5, flag=0.9)
    image = jpeg(96, 64, seed=2)
    assert screen(never, ScreenJob("a", image))[0].verdict == Verdict.REVIEW
    assert screen(flags, ScreenJob("a", image))[0].verdict == Verdict.FLAG
    cleared = screen(quiet, ScreenJob("a", image))[0]
    assert cleared.verdict == Verdict.CLEAR and cleared.decided_by == "" and cleared.deciding_class is None


@pytest.mark.parametrize("change, words", [
    (dict(classes=[{"id": 0, "label": "ivory", "review_threshold": 0.5, "flag_threshold": None}]), "disagree with the detector"),
    (dict(features="tiles-only"), "head features"),
    (dict(backbone="lite7"), "unknown backbone"),
])
def test_a_head_that_does_not_fit_is_refused_with_a_clear_error(untrained_weights, tmp_path, change, words):
    weights = with_head(untrained_weights, tmp_path, biases={}, **change)
    with pytest.raises(ModelError, match=words):
        if "classes" in change or "features" in change:
            WeightsStore(weights).get()
        else:
            screen(weights)


def test_a_missing_or_damaged_head_file_is_refused(untrained_weights, tmp_path):
    missing = with_head(untrained_weights, tmp_path / "a", biases={})
    next(missing.glob("*.head.npz")).unlink()
    with pytest.raises(ModelError, match="missing"):
        screen(missing)
    damaged = with_head(untrained_weights, tmp_path / "b", biases={}, file_bytes=b"not an npz")
    with pytest.raises(ModelError, match="not an image-level head"):
        screen(damaged)


def test_the_heat_box_holds_the_warm_cells():
    cam = np.zeros((7, 7), np.float32)
    cam[1:3, 4:6] = 5.0
    assert heat_box(cam) == (4 / 7, 1 / 7, 6 / 7, 3 / 7)
    assert heat_box(np.ones((7, 7), np.float32)) == (0.0, 0.0, 1.0, 1.0)  # a flat map: the whole image


def test_the_backbone_on_onnx_runtime_agrees_with_pytorch_and_is_cached(untrained_weights, tmp_path):
    from server.core.imagehead import ImageHead

    weights = with_head(untrained_weights, tmp_path, biases={})
    spec = WeightsStore(weights).get().head_spec
    head_file = weights / spec.file
    on_onnx = ImageHead.load(head_file, spec, "cpu", onnx_cache=tmp_path / "cache", threads=1)
    on_torch = ImageHead.load(head_file, spec, "cpu")
    assert "onnxruntime" in on_onnx.runtime_name and "torch" in on_torch.runtime_name
    assert len(list((tmp_path / "cache").glob("head-lite0-*.onnx"))) == 1  # exported once, reused by the next start
    rng = np.random.default_rng(5)
    on_onnx.weight = on_torch.weight = rng.normal(0, 0.05, on_torch.weight.shape).astype(np.float32)  # not all zero
    crops = [on_onnx.crops(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for _ in range(3)]
    a, b = on_onnx.run(crops), on_torch.run(crops)
    for x, y in zip(a, b):
        assert np.allclose(x.scores, y.scores, atol=1e-4) and not np.allclose(x.scores, x.scores[0])
        assert all(np.allclose(x.heat_maps[c], y.heat_maps[c], atol=1e-3) for c in y.heat_maps)


def test_a_clear_overlay_says_what_the_models_card_says_it_misses(untrained_weights, tmp_path):
    """The note comes from the manifest's `limitations`, only on CLEAR and only for screened classes."""
    import json

    import cv2

    from server.core.overlay import VERDICT_COLOURS_BGR

    weights = with_head(untrained_weights, tmp_path, biases={})  # the head calls for nothing: CLEAR
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["versions"][manifest["current"]]["limitations"] = {"tiger_parts": "finds few tiger products"}
    (weights / "manifest.json").write_text(json.dumps(manifest))
    image = jpeg(320, 240, seed=4)
    noted, other = screen(weights, ScreenJob("a", image, overlay="png"), ScreenJob("b", image, overlay="png", classes=("ivory",)))
    green = np.array(VERDICT_COLOURS_BGR["CLEAR"])

    def banner_rows(result) -> int:
        pixels = cv2.imdecode(np.frombuffer(result.overlay, np.uint8), cv2.IMREAD_COLOR)
        return int((np.abs(pixels[:, 160].astype(int) - green).sum(axis=1) < 30).sum())

    assert noted.verdict == Verdict.CLEAR and banner_rows(noted) > banner_rows(other)  # one more line in the banner
