"""The one image decoder: encoded bytes in, model input out, or a clear InvalidInput.

`ImageDecoder` owns the three ways from bytes to a model's input and chooses between them per
image; the engine decides nothing about bytes, it takes `PreparedImage`s:
- host: decode and letterbox with OpenCV in the decode threads;
- reduced size: JPEGs decoded at 1/2, 1/4 or 1/8 scale in the DCT when the model only needs a
  smaller image (3x faster than a full decode on listing-sized photos);
- device (CUDA): JPEG bytes go to the model thread as they are, and `to_batch` decodes the whole
  batch with nvJPEG (`torchvision.io.decode_jpeg(device="cuda")`), turns and letterboxes it with
  tensor ops on the GPU. The CPU then only reads headers, which is what keeps a GPU fed.

Host decoding takes two steps, so that a hostile file costs nothing before it is refused:
1. `probe` reads only the header (Pillow parses headers lazily, without decoding pixels): format,
   size, EXIF orientation, alpha. Byte and pixel limits are checked here (decompression bombs).
2. `decode` decodes with OpenCV (libjpeg-turbo, releases the GIL, so it runs in worker threads in
   parallel), at reduced size when `min_side` allows.

EXIF orientation is applied, so pixels and boxes are in the frame a person sees. Grayscale, CMYK,
16-bit and palette images become 8-bit BGR; alpha is composited over white, as a web page shows it.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from server.core.errors import ImageTooLarge, UndecodableImage
from server.core.geometry import PAD_VALUE, Letterbox, apply_orientation, apply_orientation_tensor, upright_size

# The only Pillow plugins that ever parse caller bytes, and the format names we report.
_OPENERS = ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"]
_REPORTED_FORMAT = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF", "GIF": "GIF"}
# Only to word the error for a file that starts like an image but whose header is broken.
_MAGIC = ((b"\xff\xd8", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\0", "TIFF"),
          (b"MM\0*", "TIFF"), (b"RIFF", "WebP"))
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La", "I;16A"})
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
_DEVICE_DECODABLE_MODES = frozenset({"RGB", "L"})
MIB = 1024 * 1024


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 20 * MIB
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    """Upright width (after EXIF orientation), in pixels."""
    height: int
    orientation: int
    has_alpha: bool
    mode: str = "RGB"
    """Pillow's mode of the stored pixels (RGB, L, CMYK, RGBA, P, I;16, ...)."""


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray
    """Upright BGR uint8, H x W x 3; smaller than header.width x header.height when decoded reduced."""
    header: ImageHeader

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def reduction(self) -> float:
        return self.header.width / self.pixels.shape[1]


def probe(data: bytes, limits: DecodeLimits = DecodeLimits()) -> ImageHeader:
    """Read and check the header; raise InvalidInput subclasses with a message for the caller."""
    if not data:
        raise UndecodableImage("image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image is {len(data) / MIB:.1f} MiB; the limit is {limits.max_bytes / MIB:.1f} MiB")
    try:
        with _open_header(data) as im:
            fmt, (stored_w, stored_h), mode = im.format, im.size, im.mode
            has_alpha = mode in _ALPHA_MODES or "transparency" in im.info
            orientation = _orientation_of(im)
    except Exception as exc:  # Pillow raises many types on broken headers: all mean the same to a caller
        claimed = next((name for magic, name in _MAGIC if data.startswith(magic)), None)
        if claimed:
            raise UndecodableImage(f"truncated or corrupt {claimed} header ({len(data)} bytes): {exc}") from None
        head = data[:8].hex(" ")
        raise UndecodableImage(
            f"not a JPEG, PNG, WebP, BMP, TIFF or GIF image ({len(data)} bytes starting {head})"
        ) from None
    if stored_w < 1 or stored_h < 1:
        raise UndecodableImage(f"image header says {stored_w} x {stored_h} pixels")
    if stored_w * stored_h > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {stored_w} x {stored_h} = {stored_w * stored_h / 1e6:.1f} megapixels; "
            f"the limit is {limits.max_pixels / 1e6:.1f} megapixels"
        )
    width, height = upright_size(stored_w, stored_h, orientation)
    return ImageHeader(_REPORTED_FORMAT.get(fmt, fmt), width, height, orientation, has_alpha, mode)


def _open_header(data: bytes) -> Image.Image:
    """Parse the header with Pillow's own format plugins, as `Image.open` does, but only ours, and
    without `Image.open` itself: Ultralytics replaces that with a version that tries to pip-install
    a HEIF plugin on any unidentified file, which must never happen on caller bytes."""
    Image.init()
    prefix = data[:16]
    for fmt in _OPENERS:
        factory, accept = Image.OPEN[fmt]
        if accept is not None and not accept(prefix):
            continue
        try:
            return factory(io.BytesIO(data), "")
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue
    raise UnidentifiedImageError("no plugin recognised the data")


def _orientation_of(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not lose the image: OpenCV ignores it too
        return 1
    return value if 1 <= value <= 8 else 1


def reduction_for(header: ImageHeader, min_side: int | None) -> int:
    """Largest JPEG DCT scale-down (1, 2, 4 or 8) that keeps the longer side >= min_side."""
    if min_side is None or header.format != "JPEG" or header.has_alpha:
        return 1
    longer = max(header.width, header.height)
    for factor in (8, 4, 2):
        if longer // factor >= min_side:
            return factor
    return 1


def decode(data: bytes, limits: DecodeLimits = DecodeLimits(), min_side: int | None = None) -> DecodedImage:
    """Decode `data` to upright BGR. With `min_side`, JPEGs may come back smaller, longer side >= min_side."""
    header = probe(data, limits)
    buffer = np.frombuffer(data, dtype=np.uint8)
    factor = reduction_for(header, min_side)
    try:
        if header.has_alpha:
            pixels = _decode_with_alpha(buffer, header)
        else:
            # OpenCV applies EXIF orientation itself for IMREAD_COLOR and the reduced modes.
            pixels = cv2.imdecode(buffer, _REDUCED_FLAGS.get(factor, cv2.IMREAD_COLOR))
    except cv2.error as exc:
        raise UndecodableImage(f"could not decode the {header.format} data: {exc.err or 'corrupt'}") from None
    if pixels is None or pixels.size == 0:
        raise UndecodableImage(f"could not decode the {header.format} data: truncated or corrupt")
    return DecodedImage(np.ascontiguousarray(pixels), header)


def _decode_with_alpha(buffer: np.ndarray, header: ImageHeader) -> np.ndarray | None:
    raw = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)  # keeps alpha, but also skips EXIF orientation
    if raw is None:
        return None
    raw = _to_uint8(raw)
    if raw.ndim == 2:
        raw = cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
    elif raw.shape[2] == 2:  # gray + alpha
        gray, alpha = raw[:, :, 0], raw[:, :, 1]
        raw = np.dstack([gray, gray, gray, alpha])
    if raw.shape[2] == 4:
        raw = composite_over_white(raw)
    if header.format != "TIFF":  # OpenCV's TIFF decoder orients even in IMREAD_UNCHANGED
        raw = apply_orientation(raw, header.orientation)
    return raw


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        return (np.clip(np.nan_to_num(pixels), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def composite_over_white(bgra: np.ndarray) -> np.ndarray:
    """BGRA -> BGR as it looks on a white page."""
    alpha = bgra[:, :, 3:4].astype(np.uint16)
    bgr = bgra[:, :, :3].astype(np.uint16)
    return ((bgr * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def encode(image: np.ndarray, fmt: str, jpeg_quality: int = 90) -> bytes:
    """Encode BGR pixels as "jpeg" or "png"."""
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        raise ValueError(f"unknown overlay format {fmt!r}")
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return buf.tobytes()



@dataclass(frozen=True)
class PreparedImage:
    """An image ready for the model, and the way back to the upright original."""

    pixels: np.ndarray | None
    """S x S x 3 uint8 BGR, letterboxed on the host; None when `encoded` is decoded on the device."""
    letterbox: Letterbox
    width: int
    height: int
    encoded: bytes | None = None
    """JPEG bytes to decode on the device (CUDA)."""
    orientation: int = 1


class ImageDecoder:
    """Bytes -> `PreparedImage` for a model of `input_size` on `device`: the one path from bytes to
    model input, for serving, evaluation and benchmarks alike. Decodes on the device by default
    when the device is CUDA."""

    def __init__(self, input_size: int, device: torch.device | str = "cpu", limits: DecodeLimits = DecodeLimits(),
                 on_device: bool | None = None) -> None:
        self.input_size = input_size
        self.limits = limits
        self.on_device = torch.device(device).type == "cuda" if on_device is None else on_device

    def letterbox(self, image: DecodedImage) -> PreparedImage:
        """Letterbox a decoded image on the host; runs in the decode threads, off the model's thread."""
        height, width = image.pixels.shape[:2]
        letterbox = Letterbox.fit(width, height, self.input_size)
        return PreparedImage(letterbox.apply(image.pixels), letterbox, image.width, image.height)

    def prepare(self, data: bytes, keep_full_size: bool = False) -> tuple[DecodedImage | None, PreparedImage]:
        """JPEGs are decoded at reduced size unless the full-size image is needed (an overlay), or
        left for the device to decode (then no DecodedImage is returned)."""
        if self.on_device and not keep_full_size:
            header = probe(data, self.limits)
            if header.format == "JPEG" and header.mode in _DEVICE_DECODABLE_MODES:
                letterbox = Letterbox.fit(header.width, header.height, self.input_size)
                return None, PreparedImage(None, letterbox, header.width, header.height, data, header.orientation)
        image = decode(data, self.limits, min_side=None if keep_full_size else self.input_size)
        return image, self.letterbox(image)


def to_batch(images: list[PreparedImage], device: torch.device, size: int) -> tuple[torch.Tensor, dict[int, Exception]]:
    """The (B, 3, S, S) uint8 RGB batch on `device`, and the images that failed to decode there."""
    on_host = [i for i, im in enumerate(images) if im.pixels is not None]
    on_device = [i for i, im in enumerate(images) if im.pixels is None]
    failures: dict[int, Exception] = {}
    if not on_device:
        host = torch.from_numpy(np.stack([im.pixels for im in images]))
        if device.type == "cuda":
            host = host.pin_memory().to(device, non_blocking=True)
        return host.permute(0, 3, 1, 2).flip(1), failures  # NHWC BGR -> NCHW RGB
    batch = torch.full((len(images), 3, size, size), PAD_VALUE, dtype=torch.uint8, device=device)
    if on_host:
        host = torch.from_numpy(np.stack([images[i].pixels for i in on_host]))
        if device.type == "cuda":
            host = host.pin_memory().to(device, non_blocking=True)
        batch[on_host] = host.permute(0, 3, 1, 2).flip(1)
    for i, decoded in zip(on_device, _decode_on_device([images[i].encoded for i in on_device], device)):
        if isinstance(decoded, Exception):
            failures[i] = decoded
        else:
            batch[i] = images[i].letterbox.apply_tensor(apply_orientation_tensor(decoded, images[i].orientation))
    return batch, failures


def _decode_on_device(blobs: list[bytes], device: torch.device) -> list[torch.Tensor | Exception]:
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    try:
        return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        out: list[torch.Tensor | Exception] = []
        for t in tensors:  # one bad JPEG must not fail the batch: find it alone
            try:
                out.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=device))
            except RuntimeError as exc:
                out.append(UndecodableImage(f"could not decode the JPEG data: {exc}"))
        return out
