"""The fast paths give the detections of the reference path (full decode, OpenCV letterbox,
PyTorch FP32): reduced JPEG decoding, device-side decoding and letterboxing (run here on the CPU,
the same code CUDA runs), and ONNX Runtime."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from server.core.decoding import ImageDecoder
from server.core.errors import UndecodableImage
from server.core.geometry import Letterbox, apply_orientation, apply_orientation_tensor
from tests.support.agreement import LOW_FLOOR, check_a_bad_jpeg_fails_alone, finds_again
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


def test_reduced_decoding_letterboxes_nearly_the_same_pixels():
    """Model-free: the picture the model gets from a 1/2 or 1/4 scale DCT decode is the full
    decode's, up to resampling noise."""
    from server.core.decoding import decode

    for data in scenes():
        full, reduced = decode(data), decode(data, min_side=256)
        assert (reduced.width, reduced.height) == (full.width, full.height)
        assert reduced.pixels.shape[0] < full.pixels.shape[0] or reduced.pixels.shape[1] < full.pixels.shape[1]
        lb = Letterbox.fit(full.width, full.height, 256)
        a = lb.apply(full.pixels).astype(int)
        b = Letterbox.fit(reduced.pixels.shape[1], reduced.pixels.shape[0], 256).apply(reduced.pixels).astype(int)
        assert np.abs(a - b).mean() < 3.0, np.abs(a - b).mean()


def test_reduced_and_device_decoding_find_what_full_decoding_finds(tiny_run):
    best = tiny_run / "weights" / "best.pt"
    engine = candidate_engine(best, "cpu")
    host = ImageDecoder(engine.input_size, "cpu")
    device_path = ImageDecoder(engine.input_size, "cpu", on_device=True)
    images = scenes()
    full = engine.run([host.prepare(d, keep_full_size=True)[1] for d in images], LOW_FLOOR)
    reduced_prepared = [host.prepare(d)[1] for d in images]
    assert all(p.pixels is not None for p in reduced_prepared)
    reduced = engine.run(reduced_prepared, LOW_FLOOR)
    on_device_prepared = [device_path.prepare(d)[1] for d in images]
    assert all(p.pixels is None and p.encoded for p in on_device_prepared)
    on_device = engine.run(on_device_prepared, LOW_FLOOR)
    # Decoding at 1/2 or 1/4 scale in the DCT resamples differently: the strongest detections
    # (the ones that decide verdicts) come back in place, within a fifth of their confidence.
    assert finds_again(full, reduced, top=2, min_iou=0.85, relative_confidence=0.2) == []
    # Bilinear resampling of OpenCV and of torch differ by a grey level at most: the same detections.
    assert finds_again(full, on_device, top=3, min_iou=0.95, relative_confidence=0.05, absolute_confidence=0.01) == []


def test_a_bad_jpeg_in_a_device_batch_fails_alone(tiny_run):
    engine = candidate_engine(tiny_run / "weights" / "best.pt", "cpu")
    check_a_bad_jpeg_fails_alone(engine, ImageDecoder(engine.input_size, "cpu", on_device=True), UndecodableImage)


def test_cmyk_jpeg_stays_on_the_host_path():
    decoder = ImageDecoder(128, "cpu", on_device=True)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).convert("CMYK").save(buf, "JPEG")
    assert decoder.prepare(buf.getvalue())[1].pixels is not None
