"""Objects found by their pixels, without a model: one object on a plain background (`segment`),
or the main subject of a photo (`salient`, GrabCut). `autolabel` proposes boxes with them;
`composite` cuts objects out of plain-background shots with the same mask.
"""

from __future__ import annotations

import cv2
import numpy as np

ANALYSIS_SIDE = 256


def _plain_foreground(image: np.ndarray) -> tuple[np.ndarray | None, float, float, str]:
    """Foreground mask at analysis size (None and a reason when the border is not plain), the scale, the border spread."""
    height, width = image.shape[:2]
    scale = ANALYSIS_SIDE / max(height, width)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB).astype(np.float32)
    background = _background_model(lab)
    edge = np.zeros(lab.shape[:2], bool)
    edge[:4], edge[-4:], edge[:, :4], edge[:, -4:] = True, True, True, True
    residual = np.linalg.norm(lab - background, axis=2)
    spread = float(np.percentile(residual[edge], 90))
    if spread > 14:
        return None, scale, spread, f"background not plain (border spread {spread:.0f})"
    mask = (residual > max(14.0, 2.5 * spread + 8.0)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return mask, scale, spread, ""


def plain_background_mask(image: np.ndarray) -> np.ndarray | None:
    """Full-size 0/1 mask of what stands out from a plain background (a cut-out for compositing);
    None when the background is not plain."""
    mask, *_ = _plain_foreground(image)
    if mask is None or not mask.any():
        return None
    return cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)


def segment_plain_background(image: np.ndarray, min_area: float = 0.01, max_fill: float = 0.92) -> tuple[list, float, str]:
    """Boxes of the objects on a plain background, a quality score in 0..1, and a reason when none."""
    height, width = image.shape[:2]
    mask, scale, spread, why = _plain_foreground(image)
    if mask is None:
        return [], 0.0, why
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    area = mask.shape[0] * mask.shape[1]
    boxes = []
    for i in range(1, count):
        x, y, w, h, pixels = stats[i]
        if pixels >= min_area * area:
            boxes.append((x / scale, y / scale, (x + w) / scale, (y + h) / scale))
    if not boxes:
        return [], 0.0, "no object stands out from the background"
    boxes = _merge_overlapping(boxes)
    fill = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes) / (width * height)
    if fill > max_fill:
        return [], 0.0, f"object fills the frame ({fill:.0%}): cannot tell object from background"
    if len(boxes) > 6:
        return [], 0.0, f"{len(boxes)} separate regions: cluttered, not one object on a plain background"
    return boxes, float(np.clip(1.0 - spread / 14.0, 0.0, 1.0)), ""


def _background_model(lab: np.ndarray, border: int = 4) -> np.ndarray:
    """A smooth (quadratic) background fitted to the image border: studio sweeps shade from light to
    dark, and a single background colour would call half of such a backdrop foreground."""
    h, w = lab.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    x, y = xs / max(w - 1, 1) - 0.5, ys / max(h - 1, 1) - 0.5
    design = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)
    edge = np.zeros((h, w), bool)
    edge[:border], edge[-border:], edge[:, :border], edge[:, -border:] = True, True, True, True
    # Robust fit: fit, drop the border pixels furthest off (an object touching the border), refit.
    keep = edge.copy()
    for _ in range(2):
        coeffs, *_ = np.linalg.lstsq(design[keep], lab[keep], rcond=None)
        fitted = design @ coeffs
        off = np.linalg.norm(lab - fitted, axis=2)
        keep = edge & (off <= np.percentile(off[edge], 80))
    return fitted


def segment_salient(image: np.ndarray, iterations: int = 3) -> tuple[list, float, str]:
    """The main subject's box by GrabCut from a rectangle 4% inside the frame; a reason when none."""
    height, width = image.shape[:2]
    scale = min(1.0, ANALYSIS_SIDE / max(height, width))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    if min(sh, sw) < 16:
        return [], 0.0, "too small to segment"
    rect = (int(0.04 * sw), int(0.04 * sh), int(0.92 * sw), int(0.92 * sh))
    mask = np.zeros((sh, sw), np.uint8)
    cv2.grabCut(small, mask, rect, np.zeros((1, 65)), np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_RECT)
    foreground = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(foreground)
    if count < 2:
        return [], 0.0, "no subject separates from the surroundings"
    i = 1 + int(np.argmax(stats[1:, 4]))
    x, y, w, h, area = stats[i]
    if area < 0.03 * sw * sh:
        return [], 0.0, f"subject region tiny ({area / (sw * sh):.0%})"
    fill = (w * h) / (rect[2] * rect[3])
    if fill > 0.85:
        return [], 0.0, f"subject fills the frame ({fill:.0%}): cannot tell it from its surroundings"
    return [(x / scale, y / scale, (x + w) / scale, (y + h) / scale)], float(area / (w * h)), ""


def _merge_overlapping(boxes: list) -> list:
    """Join boxes that overlap (an object broken into parts by a highlight or a gap)."""
    merged = True
    boxes = [list(b) for b in boxes]
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, c = boxes[i], boxes[j]
                if a[0] <= c[2] and c[0] <= a[2] and a[1] <= c[3] and c[1] <= a[3]:
                    boxes[i] = [min(a[0], c[0]), min(a[1], c[1]), max(a[2], c[2]), max(a[3], c[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [tuple(b) for b in boxes]
