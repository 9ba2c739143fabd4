"""Comparisons of two paths' detections (path against path, never against absolute numbers)."""

from __future__ import annotations

from server.core.detections import Detections
from server.core.errors import UndecodableImage
from tests.support.images import broken_jpeg, scenes
from training.export import match


def agreement(reference: list[Detections], candidate: list[Detections], floor: float, **tolerance) -> tuple[int, int]:
    total = matched = 0
    for r, c in zip(reference, candidate):
        n, m, _, _ = match(r, c, floor, **tolerance)
        total, matched = total + n, matched + m
    return total, matched


def check_a_bad_jpeg_fails_alone(engine, decoder) -> None:
    """The images beside a broken JPEG in a device-decoded batch get the detections they get alone."""
    good = scenes()
    alone = engine.run([decoder.prepare(d)[1] for d in (good[0], good[1])], 0.2)
    mixed = engine.run([decoder.prepare(d)[1] for d in (good[0], broken_jpeg(good[2]), good[1])], 0.2)
    assert all(p.pixels is None for p in [decoder.prepare(broken_jpeg(good[2]))[1]])
    total, matched = agreement(alone, [mixed[0], mixed[2]], 0.2, min_iou=0.95, max_confidence_difference=0.01)
    assert total >= 2 and matched == total
    # libjpeg says the data is truncated; nvJPEG decodes the zeros into a grey picture: both are fine.
    assert isinstance(mixed[1], (UndecodableImage, Detections))
