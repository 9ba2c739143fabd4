"""Reviewer overlays: boxes, labels and confidences drawn onto the upright image.

Line width and font scale with the image, so labels are readable on a 600 px phone photo and on a
4000 px camera image alike. One colour per class (from the taxonomy); strongest boxes drawn last,
on top.

What a person sees first is what reached its class's review threshold (`strong`, from the one
verdict rule); weaker boxes only on request, thin, faded and marked "weak", so five 0.01-0.23
boxes on a CLEAR image no longer look like finds. The review page follows the same rule.
"""

from __future__ import annotations

import cv2
import numpy as np

from server.core.detections import Detections
from server.core.taxonomy import by_id

FONT = cv2.FONT_HERSHEY_SIMPLEX


def line_width_for(width: int, height: int) -> int:
    """About 0.3% of the image's mean side: 2 px at 600 px, 10 px at 4000 px."""
    return max(2, round(0.003 * (width + height) / 2))


def _text_colour(background_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = background_bgr
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else (255, 255, 255)


def _label(canvas: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], line: int, above: bool) -> None:
    scale = line / 3.0
    thickness = max(1, line // 2)
    (tw, th), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(2, line)
    height = th + baseline + pad
    top = y - height if above and y - height >= 0 else y
    right = min(x + tw + 2 * pad, canvas.shape[1])
    left = max(0, right - tw - 2 * pad)
    cv2.rectangle(canvas, (left, top), (right, top + height), colour, -1)
    cv2.putText(canvas, text, (left + pad, top + th + pad // 2), FONT, scale, _text_colour(colour), thickness, cv2.LINE_AA)


def draw_overlay(image: np.ndarray, detections: Detections, caption: str = "", strong: np.ndarray | None = None,
                 weaker: bool = False) -> np.ndarray:
    """A copy of BGR `image` with `detections` drawn; `caption` (e.g. verdict and model) at the bottom.
    `strong` marks the detections that reached their class's review threshold (all, when None);
    the others are drawn only with `weaker`, faded and thin."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    line = line_width_for(width, height)
    strong = np.ones(len(detections.confidence), bool) if strong is None else np.asarray(strong, bool)
    weak = [i for i in np.argsort(detections.confidence, kind="stable") if not strong[i]] if weaker else []
    if weak:
        faded = canvas.copy()
        for i in weak:
            cls = by_id(int(detections.class_id[i]))
            x1, y1, x2, y2 = (int(round(v)) for v in detections.xyxy[i])
            cv2.rectangle(faded, (x1, y1), (x2, y2), cls.colour_bgr, max(1, line // 2), cv2.LINE_AA)
            _label(faded, f"{cls.label} {detections.confidence[i]:.2f} weak", x1, y2, cls.colour_bgr, max(1, line // 2), above=False)
        canvas = cv2.addWeighted(faded, 0.55, canvas, 0.45, 0)
    for i in np.argsort(detections.confidence, kind="stable"):
        if not strong[i]:
            continue
        cls = by_id(int(detections.class_id[i]))
        x1, y1, x2, y2 = (int(round(v)) for v in detections.xyxy[i])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), cls.colour_bgr, line, cv2.LINE_AA)
        _label(canvas, f"{cls.label} {detections.confidence[i]:.2f}", x1, y1, cls.colour_bgr, line, above=True)
    if caption:
        _, th = cv2.getTextSize(caption, FONT, line / 3.0, max(1, line // 2))[0]
        _label(canvas, caption, 0, height - th - 3 * line, (40, 40, 40), line, above=False)
    return canvas
