"""The fast paths give the detections of the reference path (full decode, OpenCV letterbox,
PyTorch FP32): reduced JPEG decoding, device-side decoding and letterboxing (run here on the CPU,
the same code CUDA runs), and ONNX Runtime."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from server.core.decoding import ImageDecoder
from server.core.geometry import Letterbox, apply_orientation, apply_orientation_tensor
from tests.support.detections import agreement, check_a_bad_jpeg_fails_alone
from tests.support.images import scenes
from training.modelfile import candidate_engine

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tensor_orientation_matches_the_host_one(orientation):
    pixels = np.random.default_rng(orientation).integers(0, 255, (5, 9, 3), dtype=np.uint8)
    expected = apply_orientation(pixels, orientation)
    got = apply_orientation_tensor(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("width,height", [(640, 480), (300, 900), (128, 128)])
def test_tensor_letterbox_matches_opencv(width, height):
    import cv2

    pixels = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8), (5, 5), 0)
    lb = Letterbox.fit(width, height, 256)
    host = lb.apply(pixels).astype(int)
    device = lb.apply_tensor(torch.from_numpy(pixels).permute(2, 0, 1)).permute(1, 2, 0).numpy().astype(int)
    assert np.abs(host - device).max() <= 3 and np.abs(host - device).mean() < 0.3


def test_reduced_and_device_decoding_find_what_full_decoding_finds(tiny_run):
    best = tiny_run / "weights" / "best.pt"
    engine = candidate_engine(best, "cpu")
    host = ImageDecoder(engine.input_size, "cpu")
    device_path = ImageDecoder(engine.input_size, "cpu", on_device=True)
    images = scenes()
    full = engine.run([host.prepare(d, keep_full_size=True)[1] for d in images], 0.2)
    reduced_prepared = [host.prepare(d)[1] for d in images]
    assert all(p.pixels is not None for p in reduced_prepared)
    reduced = engine.run(reduced_prepared, 0.2)
    on_device_prepared = [device_path.prepare(d)[1] for d in images]
    assert all(p.pixels is None and p.encoded for p in on_device_prepared)
    on_device = engine.run(on_device_prepared, 0.2)
    # Decoding at 1/2 or 1/4 scale in the DCT resamples differently: every confident detection
    # (the ones that decide verdicts) is found again; of those near 0.5 one may move further or
    # drop out (which ones depends on the machine that trained the tiny model: seen on a GPU host).
    total, matched = agreement(full, reduced, 0.8, min_iou=0.9, max_confidence_difference=0.05)
    assert total >= 4 and matched == total
    total, matched = agreement(full, reduced, 0.5, min_iou=0.8, max_confidence_difference=0.1)
    assert matched >= total - 1
    # Bilinear resampling of OpenCV and of torch differ by a grey level at most: same detections.
    total, matched = agreement(full, on_device, 0.2)
    assert total >= 4 and matched == total


def test_a_bad_jpeg_in_a_device_batch_fails_alone(tiny_run):
    engine = candidate_engine(tiny_run / "weights" / "best.pt", "cpu")
    check_a_bad_jpeg_fails_alone(engine, ImageDecoder(engine.input_size, "cpu", on_device=True))


def test_cmyk_jpeg_stays_on_the_host_path():
    decoder = ImageDecoder(128, "cpu", on_device=True)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).convert("CMYK").save(buf, "JPEG")
    assert decoder.prepare(buf.getvalue())[1].pixels is not None
