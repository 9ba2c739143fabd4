import io

import cv2
import numpy as np
import pytest
from PIL import Image

from server.core.decoding import DecodeLimits, composite_over_white, decode, encode, probe, reduction_for
from server.core.errors import ImageTooLarge, UndecodableImage
from tests.support.images import png_claiming


def pil_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def red_square() -> Image.Image:
    im = Image.new("RGB", (64, 48), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 16, 16))  # red top-left corner
    return im


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_each_supported_format_decodes_to_bgr(fmt):
    decoded = decode(pil_bytes(red_square(), fmt))
    assert decoded.pixels.shape == (48, 64, 3)
    assert decoded.pixels.dtype == np.uint8
    b, g, r = decoded.pixels[4, 4].astype(int)
    assert r > 200 and b < 60  # red stays red: channels are BGR


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (20, 10), (255, 0, 0)), Image.new("RGB", (20, 10), (0, 255, 0))]
    data = pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    b, g, r = decode(data).pixels[5, 5].astype(int)
    assert r > 200 and g < 60


def test_grayscale_and_16_bit_and_cmyk_become_8_bit_bgr():
    gray = decode(pil_bytes(Image.new("L", (10, 10), 128), "PNG")).pixels
    assert gray.shape == (10, 10, 3) and abs(int(gray[0, 0, 0]) - 128) <= 1
    ok, sixteen = cv2.imencode(".png", np.full((10, 10), 40000, np.uint16))
    assert decode(sixteen.tobytes()).pixels[0, 0, 0] == 40000 >> 8
    cmyk = decode(pil_bytes(Image.new("RGB", (10, 10), (255, 0, 0)).convert("CMYK"), "JPEG")).pixels
    assert cmyk[5, 5, 2] > 200 and cmyk[5, 5, 0] < 60


def test_alpha_is_composited_over_white():
    im = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red
    im.paste((0, 0, 255, 255), (0, 0, 5, 10))  # opaque blue left half
    pixels = decode(pil_bytes(im, "PNG")).pixels
    assert pixels[5, 8].tolist() == [255, 255, 255]
    assert pixels[5, 2].tolist() == [255, 0, 0]  # BGR blue
    assert composite_over_white(np.array([[[0, 0, 0, 128]]], np.uint8)).tolist() == [[[127, 127, 127]]]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("mode,fmt", [("RGB", "JPEG"), ("RGBA", "PNG"), ("RGB", "WEBP")])
def test_exif_orientation_is_applied(orientation, mode, fmt):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = pil_bytes(red_square().convert(mode), fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    decoded = decode(data)
    from PIL import ImageOps

    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)).convert("RGB")))[:, :, ::-1]
    assert decoded.pixels.shape == expected.shape
    assert (decoded.width, decoded.height) == (expected.shape[1], expected.shape[0])
    assert np.abs(decoded.pixels.astype(int) - expected).mean() < 6


def test_reduced_jpeg_decode_keeps_the_long_side_above_the_model_input():
    data = pil_bytes(Image.new("RGB", (1800, 1200), (10, 20, 30)), "JPEG")
    header = probe(data)
    assert reduction_for(header, 416) == 4
    decoded = decode(data, min_side=416)
    assert decoded.pixels.shape[1] >= 416 and decoded.pixels.shape[1] == 450
    assert (decoded.width, decoded.height) == (1800, 1200)  # the caller's image size, not the decoded one
    assert reduction_for(probe(pil_bytes(Image.new("RGB", (1800, 1200)), "PNG")), 416) == 1


@pytest.mark.parametrize(
    "data,error,words",
    [
        (b"", UndecodableImage, "empty"),
        (b"hello world, not an image", UndecodableImage, "not a JPEG, PNG"),
        (png_claiming(100_000, 100_000), ImageTooLarge, "100000 x 100000"),
        (b"\x89PNG\r\n\x1a\n\0\0", UndecodableImage, "PNG header"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(data, error, words):
    with pytest.raises(error, match=words):
        decode(data)


def test_byte_limit():
    with pytest.raises(ImageTooLarge, match="MiB"):
        probe(b"\xff" * 2048, DecodeLimits(max_bytes=1024))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_truncated_files_are_refused(fmt):
    data = pil_bytes(Image.effect_noise((128, 128), 50).convert("RGB"), fmt)
    with pytest.raises(UndecodableImage, match="truncated or corrupt"):
        decode(data[: int(len(data) * 0.9)])


def test_one_by_one_image():
    assert decode(pil_bytes(Image.new("RGB", (1, 1)), "PNG")).pixels.shape == (1, 1, 3)


def test_encode_round_trip():
    pixels = np.zeros((8, 8, 3), np.uint8)
    assert decode(encode(pixels, "png")).pixels.shape == (8, 8, 3)
    assert encode(pixels, "jpeg")[:2] == b"\xff\xd8"
