"""TensorRT (FP16, built at first start and cached beside the weights) finds what the torch
reference finds. Skipped without a CUDA GPU and TensorRT; run on a lent GPU (bench/gpu.sh)."""

import importlib.util

import pytest
import torch

from server.core.decoding import ImageDecoder
from server.core.engine import InferenceEngine
from server.core.manifest import WeightsStore
from tests.support.agreement import LOW_FLOOR, finds_again
from tests.support.images import scenes
from tests.conftest import copy_weights

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs TensorRT"),
]


def test_tensorrt_is_built_once_cached_and_finds_the_reference_detections(trained_weights, tmp_path):
    weights = copy_weights(trained_weights, tmp_path / "weights")
    store = WeightsStore(weights)
    trt = InferenceEngine.load(store, device="cuda", backend="tensorrt", batch_size_for_choice=4)
    assert trt.backend.name == "tensorrt-fp16"
    cached = list((weights / "cache").glob("*.engine"))
    assert len(cached) == 1 and cached[0].with_suffix(".json").is_file()
    mtime = cached[0].stat().st_mtime_ns
    again = InferenceEngine.load(store, device="cuda", backend="auto", batch_size_for_choice=4)
    assert cached[0].stat().st_mtime_ns == mtime  # not rebuilt
    assert "tensorrt" in again.backend_reason
    reference = InferenceEngine.load(store, device="cuda", backend="torch")
    decoder = ImageDecoder(trt.input_size, trt.backend.device)
    prepared = [decoder.prepare(d)[1] for d in scenes()]
    for batch in (prepared[:1], prepared):  # dynamic batch: 1 and 4
        ours, theirs = reference.run(batch, LOW_FLOOR), trt.run(batch, LOW_FLOOR)
        assert finds_again(ours, theirs, top=5, share=0.3, min_iou=0.9, relative_confidence=0.05, absolute_confidence=0.01) == []
