"""Comparing two paths on whatever the reference path finds.

The tiny model that the suite trains reaches different confidences on different CPUs (thread
counts, instruction sets, summation order), so no test may count detections above a fixed
confidence. Instead: take the reference path's strongest detections, however strong they are, and
require the candidate path to find each of them again, with IoU and confidence tolerances relative
to the reference. A detector always has some detections above a floor of 0.001, so the comparison
is never empty (`finds_again` fails if it would be).
"""

from __future__ import annotations

import numpy as np

from server.core.detections import Detections
from tests.support.images import broken_jpeg, scenes
from training.metrics import box_iou

LOW_FLOOR = 0.001
"""Run both paths down to here: the reference's strongest detections are always above it."""


def strongest(detections: Detections, top: int = 3, share: float = 0.5) -> Detections:
    """The `top` most confident detections among those with at least `share` of the best one's confidence."""
    if not len(detections):
        return detections
    order = np.argsort(-detections.confidence, kind="stable")
    kept = order[detections.confidence[order] >= share * detections.confidence[order[0]]][:top]
    return detections[kept]


def finds_again(
    reference: list[Detections], candidate: list[Detections], *, top: int = 3, share: float = 0.5,
    min_iou: float = 0.8, relative_confidence: float = 0.2, absolute_confidence: float = 0.02,
) -> list[str]:
    """What the candidate failed to find again, one line per miss; [] when it found everything.

    Each of the reference's strongest detections (per image) needs a candidate detection of the same
    class with IoU >= `min_iou` and a confidence within max(absolute, relative x reference) of it."""
    assert len(reference) == len(candidate), (len(reference), len(candidate))
    misses, compared = [], 0
    for index, (ref, cand) in enumerate(zip(reference, candidate)):
        wanted = strongest(ref, top, share)
        compared += len(wanted)
        ious = box_iou(wanted.xyxy, cand.xyxy) if len(wanted) and len(cand) else np.zeros((len(wanted), len(cand)))
        for i in range(len(wanted)):
            tolerance = max(absolute_confidence, relative_confidence * float(wanted.confidence[i]))
            ok = ((cand.class_id == wanted.class_id[i]) & (ious[i] >= min_iou)
                  & (np.abs(cand.confidence - wanted.confidence[i]) <= tolerance))
            if not ok.any():
                best = float(ious[i].max()) if len(cand) else 0.0
                misses.append(f"image {index}: class {int(wanted.class_id[i])} at {wanted.confidence[i]:.3f} "
                              f"{np.round(wanted.xyxy[i], 1).tolist()} not found again (best IoU {best:.2f})")
    if compared == 0:
        misses.append("the reference path found nothing to compare")
    return misses


def from_response(response) -> Detections:
    """The detections of a wildscreen.v1.ScreenResponse, as the core's result type."""
    d = response.detections
    if not d:
        return Detections.empty()
    return Detections(
        np.array([[x.box.x_min, x.box.y_min, x.box.x_max, x.box.y_max] for x in d], dtype=np.float32),
        np.array([x.confidence for x in d], dtype=np.float32),
        np.array([x.class_id for x in d], dtype=np.int64),
    )


def check_a_bad_jpeg_fails_alone(engine, decoder, bad_image_outcome: type) -> None:
    """The images beside a broken JPEG in a device-decoded batch get the detections they get alone."""
    good = scenes()
    alone = engine.run([decoder.prepare(d)[1] for d in (good[0], good[1])], LOW_FLOOR)
    mixed = engine.run([decoder.prepare(d)[1] for d in (good[0], broken_jpeg(good[2]), good[1])], LOW_FLOOR)
    assert decoder.prepare(broken_jpeg(good[2]))[1].pixels is None  # it went to the device decoder
    assert finds_again(alone, [mixed[0], mixed[2]], top=5, share=0.0, min_iou=0.95, relative_confidence=0.02,
                       absolute_confidence=0.005) == []
    # What the bad image itself gets depends on the decoder, and each one's answer is fixed: libjpeg
    # (torchvision on the CPU) says the data is truncated; nvJPEG decodes the zeros into a grey picture.
    assert type(mixed[1]) is bad_image_outcome
