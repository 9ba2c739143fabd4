import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from server.core.geometry import Letterbox, apply_orientation, normalize_boxes, upright_size


@pytest.mark.parametrize("width,height,size", [(800, 600, 416), (600, 800, 416), (1, 1, 320), (4000, 3000, 640), (417, 13, 416)])
def test_letterbox_matches_ultralytics(width, height, size):
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    expected = LetterBox((size, size), auto=False, stride=32)(image=image)
    lb = Letterbox.fit(width, height, size)
    assert np.array_equal(lb.apply(image), expected)


@pytest.mark.parametrize("width,height", [(800, 600), (600, 800), (1000, 1000), (333, 777)])
def test_boxes_round_trip_through_the_letterbox(width, height):
    lb = Letterbox.fit(width, height, 416)
    boxes = np.array([[10, 20, 300, 400], [0, 0, width, height]], dtype=np.float32)
    back = lb.boxes_to_source(lb.boxes_from_source(boxes))
    assert np.allclose(back, boxes, atol=1e-3)


def test_boxes_map_to_a_larger_target_when_decoded_reduced():
    # Decoded at half size (400x300) but the caller's image is 800x600: boxes must land in 800x600.
    lb = Letterbox.fit(400, 300, 416)
    boxes_in_decoded = np.array([[100, 50, 200, 150]], dtype=np.float32)
    in_letterbox = lb.boxes_from_source(boxes_in_decoded)
    assert np.allclose(lb.boxes_to_source(in_letterbox, 800, 600), [[200, 100, 400, 300]], atol=1e-3)


def test_boxes_are_clipped_to_the_image():
    lb = Letterbox.fit(100, 50, 128)
    out = lb.boxes_to_source(np.array([[-10, -10, 500, 500]], dtype=np.float32))
    assert out.tolist() == [[0, 0, 100, 50]]


def test_normalize_boxes():
    assert np.allclose(normalize_boxes(np.array([[10, 20, 50, 40]]), 100, 80), [[0.1, 0.25, 0.5, 0.5]])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow(orientation):
    rng = np.random.default_rng(orientation)
    pixels = rng.integers(0, 255, (6, 10, 3), dtype=np.uint8)
    im = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    assert np.array_equal(apply_orientation(pixels, orientation), expected)
    assert upright_size(10, 6, orientation) == (expected.shape[1], expected.shape[0])
