"""The inference engine: one loaded model, letterboxing, batched forward, NMS, boxes back.

Not async and not gRPC: the batcher calls `run` in its worker thread, benchmarks and training's
evaluation call it directly. One engine serves one model version; hot reload builds a new one.

Two ways from bytes to the model's input, chosen per image by `decode_and_prepare`:
- host: decode (JPEG at reduced size where the model allows) and letterbox with OpenCV in the
  decode threads; `run` stacks the uint8 images and moves them to the device in one copy;
- device (CUDA): JPEG bytes go to the model thread as they are, and `run` decodes the whole batch
  with nvJPEG (`torchvision.io.decode_jpeg(device="cuda")`), turns and letterboxes it with tensor
  ops on the GPU. The CPU then only reads headers, which is what keeps a GPU fed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from server.core.backends import Backend, OnnxBackend, TorchBackend, resolve_device
from server.core.detections import Detections
from server.core.errors import ModelError, UndecodableImage
from server.core.geometry import PAD_VALUE, Letterbox, apply_orientation_tensor
from server.core.decoding import DecodedImage, DecodeLimits, decode, probe
from server.core.manifest import ModelManifest, WeightsStore

log = logging.getLogger(__name__)

# Ultralytics' predict defaults, so that our detections are the ones `yolo predict` gives.
NMS_IOU = 0.7
NMS_MAX_DETECTIONS = 300
_DEVICE_DECODABLE_MODES = frozenset({"RGB", "L"})


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


class InferenceEngine:
    def __init__(self, manifest: ModelManifest, backend: Backend, decode_on_device: bool | None = None) -> None:
        if manifest.input_size % 32:
            raise ModelError(f"input_size {manifest.input_size} is not a multiple of 32")
        self.manifest = manifest
        self.backend = backend
        self.input_size = manifest.input_size
        self.decode_on_device = backend.device.type == "cuda" if decode_on_device is None else decode_on_device

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
        """Letterbox a decoded image on the host; runs in the decode threads, off the model's thread."""
        height, width = image.pixels.shape[:2]
        letterbox = Letterbox.fit(width, height, self.input_size)
        return PreparedImage(letterbox.apply(image.pixels), letterbox, image.width, image.height)

    def decode_and_prepare(
        self, data: bytes, limits: DecodeLimits = DecodeLimits(), keep_full_size: bool = False
    ) -> tuple[DecodedImage | None, PreparedImage]:
        """The one path from bytes to model input, for serving and evaluation alike. JPEGs are
        decoded at reduced size unless the full-size image is needed (an overlay), or left for the
        device to decode when the engine runs on CUDA (then no DecodedImage is returned)."""
        if self.decode_on_device and not keep_full_size:
            header = probe(data, limits)
            if header.format == "JPEG" and header.mode in _DEVICE_DECODABLE_MODES:
                letterbox = Letterbox.fit(header.width, header.height, self.input_size)
                return None, PreparedImage(None, letterbox, header.width, header.height, data, header.orientation)
        image = decode(data, limits, min_side=None if keep_full_size else self.input_size)
        return image, self.prepare(image)

    def _assemble(self, images: Sequence[PreparedImage]) -> tuple[torch.Tensor, dict[int, Exception]]:
        """The (B, 3, S, S) uint8 RGB batch on the backend's device, and the images that failed."""
        device = self.backend.device
        size = self.input_size
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
        for i, decoded in zip(on_device, self._decode_on_device([images[i].encoded for i in on_device])):
            if isinstance(decoded, Exception):
                failures[i] = decoded
            else:
                batch[i] = images[i].letterbox.apply_tensor(apply_orientation_tensor(decoded, images[i].orientation))
        return batch, failures

    def _decode_on_device(self, blobs: list[bytes]) -> list[torch.Tensor | Exception]:
        from torchvision.io import ImageReadMode, decode_jpeg

        device = self.backend.device
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

    def run(
        self, images: Sequence[PreparedImage], min_confidence: float, timings: dict[str, float] | None = None
    ) -> list[Detections | Exception]:
        """Detections per image, in pixels of each upright original, above `min_confidence`; an
        exception in place of the detections of an image that could not be decoded on the device.
        With `timings`, adds the milliseconds of each stage (assemble, forward, nms) to it."""
        from ultralytics.utils.nms import non_max_suppression

        if not images:
            return []
        clock = _StageClock(self.backend.device, timings)
        batch, failures = self._assemble(images)
        clock.lap("assemble")
        raw = self.backend.forward(batch)
        clock.lap("forward")
        kept = non_max_suppression(
            raw, conf_thres=min_confidence, iou_thres=NMS_IOU, max_det=NMS_MAX_DETECTIONS,
            nc=len(self.manifest.classes),
        )
        results: list[Detections | Exception] = []
        for i, (image, rows) in enumerate(zip(images, kept)):
            if i in failures:
                results.append(failures[i])
                continue
            detections = Detections.from_nms(rows.float().cpu().numpy())
            boxes = image.letterbox.boxes_to_source(detections.xyxy, image.width, image.height)
            results.append(detections.with_boxes(boxes))
        clock.lap("nms")
        return results

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Run each batch size once so that the first real request does not pay for lazy set-up."""
        rng = np.random.default_rng(0)
        for size in batch_sizes:
            pixels = rng.integers(0, 255, (self.input_size, self.input_size, 3), dtype=np.uint8)
            letterbox = Letterbox.fit(self.input_size, self.input_size, self.input_size)
            self.run([PreparedImage(pixels, letterbox, self.input_size, self.input_size)] * size, 0.25)


class _StageClock:
    """Adds stage times to a dict when asked to; on CUDA it synchronises so that times are real."""

    def __init__(self, device: torch.device, timings: dict[str, float] | None) -> None:
        self.device, self.timings = device, timings
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.timings is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self.last) * 1000.0
        self.last = now


def pick_faster(engines: Sequence[InferenceEngine], batch_size: int, repeats: int = 3) -> InferenceEngine:
    """The engine with the shortest median batch time on this machine; the others are dropped."""
    timings = defaultdict(list)
    for engine in engines:
        engine.warm_up([batch_size])
    for _ in range(repeats):  # interleaved, so that a burst of other load hits both alike
        for i, engine in enumerate(engines):
            start = time.perf_counter()
            engine.warm_up([batch_size])
            timings[i].append(time.perf_counter() - start)
    medians = [float(np.median(timings[i])) for i in range(len(engines))]
    best = int(np.argmin(medians))
    log.info(
        "backend choice",
        extra={"fields": {e.backend.name + "_ms": round(t * 1000, 1) for e, t in zip(engines, medians)} | {"chosen": engines[best].backend.name}},
    )
    return engines[best]
