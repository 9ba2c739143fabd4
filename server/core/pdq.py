"""PDQ perceptual hashes of the pixels the server has already decoded: known-image matching's signal.

PDQ (Meta, open source) turns an image into 256 bits and a quality score (0-100); two photos whose
hashes differ in at most 31 bits are the same photo, re-encoded, resized or lightly edited. It is the
hash trust-and-safety teams share (ThreatExchange, HMA, GIFCT), so a bank imported from a partner
matches here. We call `pdqhash`: Cython bindings over Meta's own C++ reference (the code
threatexchange's PDQ signal itself calls), so our hashes are bit for bit those of the reference and of
every partner who uses it, with no Python reimplementation of the DCT to keep in step. It takes the
decoded array as it is: no second decode, no file.

Defaults from PDQ's documentation, used across the codebase from here:
- `MIN_QUALITY` 50: a hash of lower quality (flat, nearly blank images) is neither stored nor matched;
- `MATCH_DISTANCE` 31: a match is a Hamming distance of at most 31 bits.

Hashes travel as 32 bytes (faiss's binary code, most significant bit first) or as 64 lowercase hex
characters, threatexchange's PDQ signal format; the two encodings are the same bits in the same order.
The 8 dihedral variants (identity, rotations by 90, 180 and 270 degrees, mirrors left-right and
top-bottom, and the two diagonal flips) are computed in one pass: a rotated or mirrored re-post matches
when any variant is within the distance of a banked hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from server.core.errors import InvalidInput

HASH_BITS = 256
HASH_BYTES = HASH_BITS // 8
HEX_CHARS = HASH_BITS // 4
MIN_QUALITY = 50
MATCH_DISTANCE = 31
DIHEDRAL = ("original", "rotate90", "rotate180", "rotate270", "flip_x", "flip_y", "flip_plus1", "flip_minus1")
"""The variants in the order `dihedral` returns them (pdqhash's, after Meta's C++)."""

_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class PdqHash:
    """One image's hash: 32 bytes and PDQ's quality (0-100)."""

    code: bytes
    quality: int

    def __post_init__(self) -> None:
        if len(self.code) != HASH_BYTES:
            raise ValueError(f"a PDQ hash is {HASH_BYTES} bytes, not {len(self.code)}")

    @property
    def hex(self) -> str:
        return self.code.hex()

    @property
    def usable(self) -> bool:
        """Good enough to store or match (quality at least MIN_QUALITY)."""
        return self.quality >= MIN_QUALITY


@dataclass(frozen=True)
class PdqDihedral:
    """The 8 variants' hashes (DIHEDRAL order; the first is the image as it is) and their common quality."""

    codes: tuple[bytes, ...]
    quality: int

    @property
    def original(self) -> PdqHash:
        return PdqHash(self.codes[0], self.quality)

    @property
    def usable(self) -> bool:
        return self.quality >= MIN_QUALITY

    def as_array(self) -> np.ndarray:
        """(8, 32) uint8: faiss's query block."""
        return np.frombuffer(b"".join(self.codes), dtype=np.uint8).reshape(len(self.codes), HASH_BYTES)


def hash_image(pixels: np.ndarray, channels: str = "BGR") -> PdqHash:
    """PDQ of a decoded uint8 image: (H, W, 3) in `channels` order (the decoder's BGR by default),
    (H, W, 4) with alpha ignored, or (H, W) grey."""
    import pdqhash

    bits, quality = pdqhash.compute(_as_rgb(pixels, channels))
    return PdqHash(_pack(bits), int(quality))


def dihedral(pixels: np.ndarray, channels: str = "BGR") -> PdqDihedral:
    """The 8 variants' hashes of a decoded image in one pass (about the cost of one hash)."""
    import pdqhash

    variants, quality = pdqhash.compute_dihedral(_as_rgb(pixels, channels))
    return PdqDihedral(tuple(_pack(bits) for bits in variants), int(quality))


def query_variants(pixels: np.ndarray, channels: str = "BGR") -> PdqDihedral:
    """What a screened image is matched by: its 8 variants and, when it sits in a uniform border (a
    white frame, letterbox bars), the 8 variants of what is inside (PDQ of a framed copy is far from
    the original's: every cell of its grid moved). Quality is the better of the two; a set below the
    floor is left out."""
    whole = dihedral(pixels, channels)
    inside = content_inside_border(pixels)
    if inside is None:
        return whole
    inner = dihedral(inside, channels)
    usable = [d for d in (whole, inner) if d.usable] or [whole]
    return PdqDihedral(tuple(code for d in usable for code in d.codes), max(d.quality for d in usable))


def content_inside_border(pixels: np.ndarray, tolerance: int = 12, least_share: float = 0.02,
                          most_share: float = 0.35) -> np.ndarray | None:
    """The image without the rows and columns at its edges that are all one colour (within
    `tolerance`, the colour of the first row or column), or None when there is no such border of at
    least `least_share` of a side, or when it would take more than `most_share` of a side (a flat
    backdrop, not a frame)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    h, w = pixels.shape[:2]

    def flat_run(lines: np.ndarray) -> int:
        """How many of `lines` ((n, length, channels), outermost first) are the first line's colour.
        Most photos stop at the first line; a frame is read a few lines at a time, never whole."""
        colour = np.median(lines[0], axis=0).astype(np.int16)
        run, step = 0, 4
        while run < len(lines):
            chunk = lines[run:run + step].astype(np.int16)
            flat = np.abs(chunk - colour).max(axis=(1, 2)) <= tolerance
            if not flat.all():
                return run + int(np.argmin(flat))
            run, step = run + len(chunk), step * 2
        return run

    top = flat_run(pixels[: h // 2, :, :3])
    bottom = flat_run(pixels[::-1][: h // 2, :, :3])
    left = flat_run(pixels[:, : w // 2, :3].transpose(1, 0, 2))
    right = flat_run(pixels[:, ::-1][:, : w // 2, :3].transpose(1, 0, 2))
    if max(top + bottom, 0) < least_share * h and left + right < least_share * w:
        return None
    if max(top, bottom) > most_share * h or max(left, right) > most_share * w:
        return None
    return np.ascontiguousarray(pixels[top:h - bottom, left:w - right])


def from_hex(text: str) -> bytes:
    """32 bytes from threatexchange's 64-hex PDQ signal (either case); InvalidInput says what is wrong."""
    text = text.strip()
    if len(text) != HEX_CHARS:
        raise InvalidInput(f"a PDQ hash is {HEX_CHARS} hex characters, this one has {len(text)}")
    if not _HEX.fullmatch(text):
        raise InvalidInput("a PDQ hash has only the characters 0-9 and a-f")
    return bytes.fromhex(text)


def to_hex(code: bytes) -> str:
    return code.hex()


def distance(a: bytes, b: bytes) -> int:
    """Hamming distance in bits."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def _pack(bits: np.ndarray) -> bytes:
    # pdqhash's vector is bit 255 first, as Meta's hex prints it: packbits (MSB first) gives those bytes.
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


def _as_rgb(pixels: np.ndarray, channels: str) -> np.ndarray:
    if pixels.dtype != np.uint8:
        raise InvalidInput(f"PDQ hashes 8-bit pixels, not {pixels.dtype}")
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise InvalidInput(f"PDQ hashes an (H, W, 3) image, not {pixels.shape}")
    if channels == "RGB":
        return pixels[:, :, :3]
    if channels == "BGR":
        return pixels[:, :, 2::-1]
    raise ValueError(f"channels is RGB or BGR, not {channels!r}")
