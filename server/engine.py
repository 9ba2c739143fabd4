"""The inference engine: one loaded model, letterboxing, batched forward, NMS, boxes back.

Not async and not gRPC: the batcher calls `run` in its worker thread, benchmarks and training's
evaluation call it directly. One engine serves one model version; hot reload builds a new one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from server.backends import Backend, OnnxBackend, TorchBackend, resolve_device
from server.detections import Detections
from server.errors import ModelError
from server.geometry import Letterbox
from server.imageio import DecodedImage, DecodeLimits, decode
from server.manifest import ModelManifest, WeightsStore

log = logging.getLogger(__name__)

# Ultralytics' predict defaults, so that our detections are the ones `yolo predict` gives.
NMS_IOU = 0.7
NMS_MAX_DETECTIONS = 300


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for the model: letterboxed pixels and the way back to the upright original."""

    pixels: np.ndarray
    """S x S x 3 uint8 BGR."""
    letterbox: Letterbox
    width: int
    height: int


class InferenceEngine:
    def __init__(self, manifest: ModelManifest, backend: Backend) -> None:
        if manifest.input_size % 32:
            raise ModelError(f"input_size {manifest.input_size} is not a multiple of 32")
        self.manifest = manifest
        self.backend = backend
        self.input_size = manifest.input_size

    @classmethod
    def load(
        cls,
        store: WeightsStore,
        version: str | None = None,
        device: str = "auto",
        backend: str = "auto",
        threads: int = 0,
        batch_size_for_choice: int = 8,
    ) -> InferenceEngine:
        """Load `version` (default: current) from `store`, checking the file's sha256 first."""
        manifest = store.get(version)
        torch_device = resolve_device(device)
        onnx = manifest.exports.get("onnx")
        if backend == "onnx":
            if onnx is None:
                raise ModelError(f"model {manifest.version} has no ONNX export; run `training export` first")
            if torch_device.type != "cpu":
                raise ModelError("the ONNX backend runs on the CPU only; use --device cpu")
            return cls(manifest, OnnxBackend(store.verified_path(onnx.file, onnx.sha256), threads))
        reference = cls(manifest, TorchBackend(store.verified_path(manifest.file, manifest.sha256), torch_device))
        if backend == "torch" or onnx is None or torch_device.type != "cpu" or not onnx.agreement.get("agrees"):
            return reference
        candidate = cls(manifest, OnnxBackend(store.verified_path(onnx.file, onnx.sha256), threads))
        return pick_faster([reference, candidate], batch_size_for_choice)

    @property
    def device(self) -> str:
        return str(self.backend.device)

    def prepare(self, image: DecodedImage) -> PreparedImage:
        """Letterbox a decoded image; runs in the decode threads, off the model's thread."""
        height, width = image.pixels.shape[:2]
        letterbox = Letterbox.fit(width, height, self.input_size)
        return PreparedImage(letterbox.apply(image.pixels), letterbox, image.width, image.height)

    def decode_and_prepare(
        self, data: bytes, limits: DecodeLimits = DecodeLimits(), keep_full_size: bool = False
    ) -> tuple[DecodedImage, PreparedImage]:
        """Decode (JPEGs at reduced size unless the full-size image is needed, e.g. for an overlay)
        and letterbox: the one path from bytes to model input, for serving and evaluation alike."""
        image = decode(data, limits, min_side=None if keep_full_size else self.input_size)
        return image, self.prepare(image)

    def run(self, images: Sequence[PreparedImage], min_confidence: float) -> list[Detections]:
        """Detections per image, in pixels of each upright original, above `min_confidence`."""
        from ultralytics.utils.nms import non_max_suppression

        if not images:
            return []
        batch = torch.from_numpy(np.stack([im.pixels for im in images]))
        raw = self.backend.forward(batch)
        kept = non_max_suppression(
            raw, conf_thres=min_confidence, iou_thres=NMS_IOU, max_det=NMS_MAX_DETECTIONS,
            nc=len(self.manifest.classes),
        )
        results = []
        for image, rows in zip(images, kept):
            detections = Detections.from_nms(rows.float().cpu().numpy())
            boxes = image.letterbox.boxes_to_source(detections.xyxy, image.width, image.height)
            results.append(detections.with_boxes(boxes))
        return results

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Run each batch size once so that the first real request does not pay for lazy set-up."""
        rng = np.random.default_rng(0)
        for size in batch_sizes:
            pixels = rng.integers(0, 255, (self.input_size, self.input_size, 3), dtype=np.uint8)
            letterbox = Letterbox.fit(self.input_size, self.input_size, self.input_size)
            self.run([PreparedImage(pixels, letterbox, self.input_size, self.input_size)] * size, 0.25)


def pick_faster(engines: Sequence[InferenceEngine], batch_size: int, repeats: int = 3) -> InferenceEngine:
    """The engine with the shortest median batch time on this machine; the others are dropped."""
    timings = []
    for engine in engines:
        engine.warm_up([batch_size])
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            engine.warm_up([batch_size])
            samples.append(time.perf_counter() - start)
        timings.append(float(np.median(samples)))
    best = int(np.argmin(timings))
    log.info(
        "backend choice",
        extra={"fields": {e.backend.name: round(t * 1000, 1) for e, t in zip(engines, timings)} | {"chosen": engines[best].backend.name}},
    )
    return engines[best]
