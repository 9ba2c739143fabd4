"""What a re-poster does to a photo, as functions of a decoded BGR image: issue 22's list, each with its
target share still matched (bench/known_images.py measures them)."""

from __future__ import annotations

import cv2
import numpy as np


def _text(im: np.ndarray, text: str, box: tuple[int, int, int, int], colour=(255, 255, 255)) -> None:
    x0, y0, x1, y1 = box
    scale = max(0.3, (y1 - y0) / 40)
    cv2.putText(im, text, (x0 + max(2, (x1 - x0) // 30), y0 + int((y1 - y0) * 0.7)), cv2.FONT_HERSHEY_SIMPLEX,
                scale, colour, max(1, int(scale * 2)), cv2.LINE_AA)


def banner(im: np.ndarray, share: float = 0.12) -> np.ndarray:
    """A price banner: a filled red strip with white text across the bottom, `share` of the image."""
    out = im.copy()
    h, w = im.shape[:2]
    top = h - int(round(h * share))
    cv2.rectangle(out, (0, top), (w - 1, h - 1), (30, 30, 200), -1)
    _text(out, "$450  DM TO BUY  fast ship", (0, top, w, h))
    return out


def watermark(im: np.ndarray, share: float = 0.12) -> np.ndarray:
    """A watermark box: a filled grey rectangle with text in the centre, `share` of the image's area."""
    out = im.copy()
    h, w = im.shape[:2]
    bw, bh = int(w * 0.6), int(h * share / 0.6)
    x0, y0 = (w - bw) // 2, (h - bh) // 2
    cv2.rectangle(out, (x0, y0), (x0 + bw, y0 + bh), (200, 200, 200), -1)
    _text(out, "@rare_goods_shop", (x0, y0, x0 + bw, y0 + bh), (40, 40, 40))
    return out


def border(im: np.ndarray, share: float = 0.10) -> np.ndarray:
    """A white border of `share` of the width (left, right) and height (top, bottom) on each side."""
    h, w = im.shape[:2]
    dy, dx = int(round(h * share)), int(round(w * share))
    return cv2.copyMakeBorder(im, dy, dy, dx, dx, cv2.BORDER_CONSTANT, value=(255, 255, 255))


def screenshot(im: np.ndarray) -> np.ndarray:
    """A phone screenshot of a listing: a dark status bar (8% of the height) and a title bar above
    the photo, white margins (4%) at the sides, a price line and grey buttons below (20%)."""
    h, w = im.shape[:2]
    bar, title, below, side = int(h * 0.08), int(h * 0.08), int(h * 0.20), int(w * 0.04)
    out = np.full((bar + title + h + below, w + 2 * side, 3), 255, dtype=np.uint8)
    out[:bar] = (40, 40, 40)
    _text(out, "12:45   4G  87%", (0, 0, out.shape[1], bar))
    _text(out, "< Listing 88213", (0, bar, out.shape[1], bar + title), (60, 60, 60))
    out[bar + title:bar + title + h, side:side + w] = im
    y = bar + title + h
    _text(out, "EUR 1,200  carved, old", (side, y, out.shape[1], y + below // 2), (0, 0, 0))
    cv2.rectangle(out, (side, y + below // 2 + 4), (out.shape[1] // 2 - 4, y + below - 4), (210, 210, 210), -1)
    cv2.rectangle(out, (out.shape[1] // 2 + 4, y + below // 2 + 4), (out.shape[1] - side, y + below - 4), (210, 210, 210), -1)
    return out


def centre_crop(im: np.ndarray, share: float) -> np.ndarray:
    """Keep the centre, `share` of the width and of the height gone in all (half from each side)."""
    h, w = im.shape[:2]
    dy, dx = int(round(h * share / 2)), int(round(w * share / 2))
    return np.ascontiguousarray(im[dy:h - dy, dx:w - dx])


def side_crop(im: np.ndarray, share: float) -> np.ndarray:
    """`share` of the width and of the height off every side (so 2 x share of each in all)."""
    h, w = im.shape[:2]
    dy, dx = int(round(h * share)), int(round(w * share))
    return np.ascontiguousarray(im[dy:h - dy, dx:w - dx])


def jpeg(quality: int):
    return lambda im: cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def resize(share: float):
    return lambda im: cv2.resize(im, (max(1, round(im.shape[1] * share)), max(1, round(im.shape[0] * share))),
                                 interpolation=cv2.INTER_AREA)


def brightness(im: np.ndarray, factor: float = 1.2) -> np.ndarray:
    return cv2.convertScaleAbs(im, alpha=factor, beta=0)


def contrast(im: np.ndarray, factor: float = 0.8) -> np.ndarray:
    mean = float(im.mean())
    return cv2.convertScaleAbs(im, alpha=factor, beta=mean * (1 - factor))


REPOSTS: list[tuple[str, object, float]] = [
    ("jpeg q50", jpeg(50), 0.95),
    ("jpeg q30", jpeg(30), 0.95),
    ("resize 50%", resize(0.5), 0.95),
    ("resize 25%", resize(0.25), 0.80),
    ("crop 5% (centre)", lambda im: centre_crop(im, 0.05), 0.95),
    ("crop 10% (centre)", lambda im: centre_crop(im, 0.10), 0.95),
    ("crop 20% (centre)", lambda im: centre_crop(im, 0.20), 0.80),
    # side_crop(s) is centre_crop(2 s): 10% off each side is a 20% crop (the 80%), 20% a 40% one
    # (harder than the issue asks; shown at the same 80%).
    ("crop 10% each side", lambda im: side_crop(im, 0.10), 0.80),
    ("crop 20% each side", lambda im: side_crop(im, 0.20), 0.80),
    ("rotate 90", lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE), 0.95),
    ("mirror", lambda im: np.ascontiguousarray(im[:, ::-1]), 0.95),
    ("price banner 12%", banner, 0.95),
    ("watermark box 12%", watermark, 0.95),
    ("white border 10%", border, 0.95),
    ("screenshot frame", screenshot, 0.95),
    ("brightness +20%", brightness, 0.95),
    ("contrast -20%", contrast, 0.95),
]
"""Issue 22's re-posts, each with its target (>= 95%, but 80% for the 25% resize and the 20% crop)."""
