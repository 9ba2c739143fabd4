"""Images for tests whose answers are fixed by construction: noise JPEGs, drawn scenes with EXIF
orientation, headers that lie about their size, JPEGs broken after a valid header."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image

from tests.support.synthetic import draw_object


def jpeg(width=320, height=240, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    return cv2.imencode(".jpg", image)[1].tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; its pixel data is a few bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def scene(width: int, height: int, class_id: int, box: tuple[int, int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.normal(100, 20, (height, width, 3)).clip(0, 255).astype(np.uint8), (3, 3), 0)
    draw_object(image, class_id, box)
    return image


def as_jpeg(image: np.ndarray, orientation: int = 1) -> bytes:
    """JPEG of `image` as a person should see it, stored rotated with the EXIF tag that undoes it."""
    from server.core.geometry import apply_orientation

    inverse = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}[orientation]
    stored = apply_orientation(image, inverse)
    assert np.array_equal(apply_orientation(stored, orientation), image)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored[:, :, ::-1]).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def scenes() -> list[bytes]:
    out = []
    for i, (class_id, box, orientation) in enumerate([(0, (100, 80, 400, 300), 1), (1, (300, 50, 600, 260), 6),
                                                      (2, (50, 150, 350, 450), 3), (3, (200, 200, 500, 420), 8)]):
        out.append(as_jpeg(scene(640, 480, class_id, box, seed=i), orientation))
    return out


def broken_jpeg(data: bytes) -> bytes:
    """The header intact (it passes the probe), the second half of the image data zeroed."""
    half = len(data) // 2
    return data[:half] + bytes(len(data) - half)


def textured_photo(seed: int) -> np.ndarray:
    """A 480x360 BGR picture with structure at several scales: PDQ needs more than noise or a flat
    field to give a hash of good quality, and rotations of it must still match (above ~300 px a side)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (9, 12, 3), dtype=np.uint8)
    image = cv2.resize(small, (480, 360), interpolation=cv2.INTER_CUBIC)
    cv2.circle(image, (int(rng.integers(100, 380)), int(rng.integers(80, 280))), 60, (255, 255, 255), -1)
    return image


def jpeg_of(image: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
