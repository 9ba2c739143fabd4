"""Contact sheets: PNG grids of thumbnails with boxes drawn, for a person to look at.

Autolabel draws its proposals on them and evaluate its predictions on test images (hits, misses,
false positives). They show `../shared` photos, so they go to ignored folders, never into git.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np

from server.core.detections import Detections
from server.core.decoding import decode
from server.core.overlay import draw_overlay

SheetItem = tuple[Path, Detections, str]
"""An image, the boxes to draw on it (pixels of the upright image) and a caption under it."""


def contact_sheet(items: list[SheetItem], path: Path, cell: int = 200, columns: int = 8, limit: int = 64, seed: int = 0) -> Path:
    """A grid of at most `limit` thumbnails (a random sample when there are more) with boxes drawn."""
    sample = list(items)
    if len(sample) > limit:
        random.Random(seed).shuffle(sample)
    tiles = []
    for image, detections, caption in sample[:limit]:
        pixels = decode(image.read_bytes()).pixels
        drawn = draw_overlay(pixels, detections) if len(detections) else pixels
        scale = cell / max(drawn.shape[:2])
        thumb = cv2.resize(drawn, (max(1, int(drawn.shape[1] * scale)), max(1, int(drawn.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        tile = np.full((cell + 14, cell, 3), 255, np.uint8)
        tile[: thumb.shape[0], : thumb.shape[1]] = thumb
        cv2.putText(tile, caption[:34], (2, cell + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    while not tiles or len(tiles) % columns:
        tiles.append(np.full((cell + 14, cell, 3), 255, np.uint8))
    grid = np.vstack([np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid)
    return path
