"""Pure geometry between the image a person sees and the square tensor the model sees.

Letterboxing follows Ultralytics' `LetterBox` exactly (same rounding, grey 114 padding), so our
boxes match `YOLO.predict`'s. All functions here are pure and unit-tested; nothing here touches
a model or a file.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

PAD_VALUE = 114

# EXIF orientation tag value -> how to turn the stored pixels upright (Pillow's exif_transpose table).
_ORIENTATION_OPS = {
    1: (),
    2: ("flip_lr",),
    3: ("rot180",),
    4: ("flip_ud",),
    5: ("transpose",),
    6: ("rot90cw",),
    7: ("transpose", "rot180"),
    8: ("rot90ccw",),
}


def apply_orientation_tensor(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """apply_orientation for a (C, H, W) tensor, on whatever device it lives on."""
    for op in _ORIENTATION_OPS.get(orientation, ()):
        if op == "flip_lr":
            image = image.flip(-1)
        elif op == "flip_ud":
            image = image.flip(-2)
        elif op == "rot180":
            image = image.flip(-1, -2)
        elif op == "transpose":
            image = image.transpose(-1, -2)
        elif op == "rot90cw":
            image = image.transpose(-1, -2).flip(-1)
        elif op == "rot90ccw":
            image = image.transpose(-1, -2).flip(-2)
    return image


def upright_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """(width, height) after applying EXIF `orientation` to a stored width x height image."""
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright as EXIF `orientation` (1..8) says; other values leave them as they are."""
    for op in _ORIENTATION_OPS.get(orientation, ()):
        if op == "flip_lr":
            image = cv2.flip(image, 1)
        elif op == "flip_ud":
            image = cv2.flip(image, 0)
        elif op == "rot180":
            image = cv2.rotate(image, cv2.ROTATE_180)
        elif op == "transpose":
            image = cv2.transpose(image)
        elif op == "rot90cw":
            image = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
        elif op == "rot90ccw":
            image = cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


@dataclass(frozen=True)
class Letterbox:
    """How a source image of source_width x source_height was placed in a size x size square."""

    size: int
    source_width: int
    source_height: int
    gain: float
    resized_width: int
    resized_height: int
    left: int
    top: int

    @classmethod
    def fit(cls, source_width: int, source_height: int, size: int) -> Letterbox:
        gain = min(size / source_height, size / source_width)
        resized_w, resized_h = round(source_width * gain), round(source_height * gain)
        pad_w, pad_h = (size - resized_w) / 2, (size - resized_h) / 2
        return cls(
            size=size,
            source_width=source_width,
            source_height=source_height,
            gain=gain,
            resized_width=resized_w,
            resized_height=resized_h,
            left=round(pad_w - 0.1),
            top=round(pad_h - 0.1),
        )

    def apply(self, image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The letterboxed size x size x 3 uint8 image (written into `out` when given)."""
        if out is None:
            out = np.empty((self.size, self.size, 3), dtype=np.uint8)
        out.fill(PAD_VALUE)
        if (image.shape[1], image.shape[0]) != (self.resized_width, self.resized_height):
            image = cv2.resize(image, (self.resized_width, self.resized_height), interpolation=cv2.INTER_LINEAR)
        out[self.top : self.top + self.resized_height, self.left : self.left + self.resized_width] = image
        return out

    def apply_tensor(self, image: torch.Tensor) -> torch.Tensor:
        """`apply` for a (3, H, W) uint8 tensor (e.g. decoded on the GPU): bilinear resize, grey padding."""
        out = torch.full((image.shape[0], self.size, self.size), PAD_VALUE, dtype=torch.uint8, device=image.device)
        if (image.shape[2], image.shape[1]) != (self.resized_width, self.resized_height):
            resized = F.interpolate(image[None].float(), size=(self.resized_height, self.resized_width), mode="bilinear", align_corners=False)
            image = resized[0].round_().clamp_(0, 255).to(torch.uint8)
        out[:, self.top : self.top + self.resized_height, self.left : self.left + self.resized_width] = image
        return out

    def boxes_to_source(self, xyxy: np.ndarray, target_width: int | None = None, target_height: int | None = None) -> np.ndarray:
        """Map boxes from letterbox pixels back to the source image, or to a target size of the
        same image (e.g. the full-resolution original when the source was decoded at 1/2 scale);
        clipped to the image."""
        target_width = target_width or self.source_width
        target_height = target_height or self.source_height
        boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
        boxes[:, [0, 2]] = (boxes[:, [0, 2]] - self.left) / self.gain * (target_width / self.source_width)
        boxes[:, [1, 3]] = (boxes[:, [1, 3]] - self.top) / self.gain * (target_height / self.source_height)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, target_width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, target_height)
        return boxes

    def boxes_from_source(self, xyxy: np.ndarray) -> np.ndarray:
        """The inverse of boxes_to_source (without clipping): source pixels -> letterbox pixels."""
        boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]] * self.gain + self.left
        boxes[:, [1, 3]] = boxes[:, [1, 3]] * self.gain + self.top
        return boxes


def normalize_boxes(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes in pixels -> fractions of the image's width and height (0..1)."""
    scale = np.array([width, height, width, height], dtype=np.float32)
    return np.asarray(xyxy, dtype=np.float32).reshape(-1, 4) / scale
