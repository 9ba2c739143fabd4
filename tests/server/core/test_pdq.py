"""PDQ on decoded pixels: the same photo re-encoded, resized, rotated or mirrored stays within 31 bits
(through the dihedral variants), an unrelated one does not, and flat images are refused by quality."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from server.core import pdq
from server.core.errors import InvalidInput


def photo(seed: int, height: int = 360, width: int = 480) -> np.ndarray:
    """A small synthetic BGR "photo": smooth random structure. Under ~300 pixels a side, PDQ's box
    filter shifts its samples when the image turns, and rotated copies of tiny images drift past 31 bits."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(image, (5, 5), 0)


def reencoded(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def nearest(hashes: pdq.PdqDihedral, other: pdq.PdqHash) -> int:
    return min(pdq.distance(code, other.code) for code in hashes.codes)


def test_the_hash_is_threatexchanges_hex_and_bgr_and_rgb_agree():
    image = photo(1)
    hashed = pdq.hash_image(image)
    assert len(hashed.hex) == pdq.HEX_CHARS and hashed.hex == hashed.hex.lower()
    assert pdq.from_hex(hashed.hex.upper()) == hashed.code
    assert pdq.hash_image(image[:, :, ::-1].copy(), channels="RGB") == hashed
    assert hashed.usable and hashed.quality >= pdq.MIN_QUALITY
    assert pdq.dihedral(image).original == hashed


@pytest.mark.parametrize("change", ["jpeg q30", "jpeg q50", "resize 50%", "resize 25%", "resize 150%"])
def test_a_reencoded_or_resized_copy_is_within_the_match_distance(change):
    image = photo(2)
    if change.startswith("jpeg"):
        copy = reencoded(image, int(change[-2:]))
    else:
        scale = int(change.split()[1][:-1]) / 100
        copy = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    assert pdq.distance(pdq.hash_image(image).code, pdq.hash_image(copy).code) <= pdq.MATCH_DISTANCE


@pytest.mark.parametrize("turn", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE, "mirror", "flip"])
def test_a_rotated_or_mirrored_copy_matches_through_the_dihedral_variants(turn):
    image = photo(3)
    if turn == "mirror":
        copy = image[:, ::-1]
    elif turn == "flip":
        copy = image[::-1]
    else:
        copy = cv2.rotate(image, turn)
    banked = pdq.hash_image(image)
    assert pdq.distance(banked.code, pdq.hash_image(copy).code) > pdq.MATCH_DISTANCE  # not without the variants
    assert nearest(pdq.dihedral(copy), banked) <= pdq.MATCH_DISTANCE


def test_unrelated_images_do_not_match():
    banked = [pdq.hash_image(photo(seed)) for seed in range(10, 20)]
    for seed in range(30, 40):
        variants = pdq.dihedral(photo(seed))
        assert all(nearest(variants, b) > pdq.MATCH_DISTANCE for b in banked)


def test_flat_images_fall_below_the_quality_floor():
    flat = np.full((120, 160, 3), 200, dtype=np.uint8)
    assert not pdq.hash_image(flat).usable
    assert not pdq.dihedral(flat).usable


def test_grey_and_alpha_images_hash_and_bad_arrays_are_refused():
    image = photo(4)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    assert pdq.distance(pdq.hash_image(grey).code, pdq.hash_image(image).code) <= pdq.MATCH_DISTANCE
    assert pdq.hash_image(np.dstack([image, np.full(grey.shape, 255, np.uint8)])) == pdq.hash_image(image)
    with pytest.raises(InvalidInput):
        pdq.hash_image(image.astype(np.float32))
    with pytest.raises(InvalidInput):
        pdq.hash_image(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.parametrize("text, problem", [("ab" * 31, "64 hex characters"), ("ab" * 33, "64 hex characters"),
                                           ("zz" * 32, "0-9 and a-f"), ("", "64 hex characters")])
def test_malformed_hex_is_refused_with_the_reason(text, problem):
    with pytest.raises(InvalidInput, match=problem):
        pdq.from_hex(text)


@pytest.mark.parametrize("frame", [
    dict(top=36, bottom=36, left=48, right=48, value=(255, 255, 255)),   # a white border, 10% a side
    dict(top=40, bottom=40, left=0, right=0, value=(0, 0, 0)),           # letterbox bars
    dict(top=0, bottom=0, left=30, right=30, value=(30, 120, 200)),      # coloured pillars
])
def test_a_framed_copy_matches_through_what_is_inside_the_frame(frame):
    image = photo(11)
    framed = cv2.copyMakeBorder(image, frame["top"], frame["bottom"], frame["left"], frame["right"],
                                cv2.BORDER_CONSTANT, value=frame["value"])
    inside = pdq.content_inside_border(framed)
    assert inside is not None and inside.shape == image.shape
    assert nearest(pdq.dihedral(framed), pdq.hash_image(image)) > pdq.MATCH_DISTANCE, "the frame alone defeats PDQ"
    query = pdq.query_variants(framed)
    assert len(query.codes) == 16 and nearest(query, pdq.hash_image(image)) <= 2


def test_a_photo_without_a_frame_or_on_a_wide_flat_backdrop_is_hashed_as_it_is():
    image = photo(12)
    assert pdq.content_inside_border(image) is None and len(pdq.query_variants(image).codes) == 8
    backdrop = np.full((360, 480, 3), 240, np.uint8)
    backdrop[150:210, 200:280] = photo(13, 60, 80)  # an object on 40%+ of plain background a side
    assert pdq.content_inside_border(backdrop) is None
