"""The inference engine: one loaded model, letterboxing, batched forward, NMS, boxes back.

Not async and not gRPC: the batcher calls `run` in its worker thread, benchmarks and training's
evaluation call it directly. One engine serves one model version; hot reload builds a new one.
It takes `PreparedImage`s from `server.core.decoding` and decides nothing about bytes.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from server.core.backends import Backend, ModelSource, OnnxBackend, TorchBackend, check_here, open_backend, resolve_device
from server.core.choice import allowed_backends
from server.core.detections import Detections
from server.core.decoding import PreparedImage, to_batch
from server.core.errors import ModelError
from server.core.geometry import Letterbox
from server.core.manifest import ModelManifest, WeightsStore
from server.core.registry import AUTO, BACKENDS

log = logging.getLogger(__name__)

# Ultralytics' predict defaults, so that our detections are the ones `yolo predict` gives.
NMS_IOU = 0.7
NMS_MAX_DETECTIONS = 300
MAX_SIDE_BY_SIDE = 8
"""Most model copies by default: each ONNX Runtime session holds about 80 MB of buffers at batch 8, 320 px."""


class InferenceEngine:
    def __init__(self, manifest: ModelManifest, backend: Backend) -> None:
        if manifest.input_size % 32:
            raise ModelError(f"input_size {manifest.input_size} is not a multiple of 32")
        names = getattr(backend, "names", None)
        if names is not None and len(names) != len(manifest.classes):
            raise ModelError(f"model {manifest.version} has {len(names)} outputs; its manifest names {len(manifest.classes)} classes")
        self.manifest = manifest
        self.backend = backend
        self.input_size = manifest.input_size
        self._class_ids = np.array([c.id for c in manifest.classes], dtype=np.int64)
        """Output index -> taxonomy id: a model detects the classes its manifest names, in that order."""
        self.backend_reason = backend.name
        """Why this backend serves (set by `load`): what it was chosen over, what was left out and why."""

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
        """Load `version` (default: current) from `store`, checking each file's sha256 first, on
        the backend `allowed_backends` allows (the fastest, measured here, when several are);
        `backend_reason` says what was chosen and why the others were not. Every backend is
        loaded through its `server.core.registry` entry."""
        manifest = store.get(version)
        torch_device = resolve_device(device)
        sources = {name: ModelSource(store, manifest, spec, torch_device, threads, batch_size_for_choice)
                   for name, spec in BACKENDS.items()}
        built_here = {name: check_here(sources[name]) for name, spec in BACKENDS.items()
                      if spec.check_here and spec.runs_on(torch_device.type) and backend in (AUTO, name)}
        choice = allowed_backends(manifest, backend, torch_device.type, built_here)
        engines = [cls(manifest, open_backend(sources[kind])) for kind in choice.kinds]
        chosen, timing = (engines[0], "") if len(engines) == 1 else pick_faster(engines, batch_size_for_choice)
        chosen.backend_reason = "; ".join([f"{chosen.backend.name}{timing}"] + choice.notes)
        log.info("backend choice", extra={"fields": {"chosen": chosen.backend.name, "reason": chosen.backend_reason}})
        return chosen

    @property
    def device(self) -> str:
        return str(self.backend.device)

    def side_by_side(self, requested: int, threads: int) -> list[InferenceEngine]:
        """Copies of this engine for batches that run side by side (see `DynamicBatcher`), each on
        its own share of `threads`: `requested` of them (0 = one per thread, at most
        MAX_SIDE_BY_SIDE), none where one would do (1) and none for PyTorch or CUDA. Only ONNX
        Runtime on the CPU gains: its sessions are independent, while PyTorch has one OpenMP team
        per process and a GPU takes one batch at a time anyway."""
        count = requested or min(threads, MAX_SIDE_BY_SIDE)
        if count < 2 or not isinstance(self.backend, OnnxBackend):
            if count > 1 and requested:
                log.warning("model_instances ignored: only ONNX Runtime on the CPU runs batches side by side",
                            extra={"fields": {"backend": self.backend.name, "model_instances": requested}})
            return []
        share = max(1, threads // count)
        copies = []
        for _ in range(count):
            copy = InferenceEngine(self.manifest, self.backend.with_threads(share))
            copy.backend_reason = self.backend_reason
            copies.append(copy)
        return copies

    def torch_threads(self, threads: int) -> int:
        """Threads for PyTorch in a model thread: all `threads` when PyTorch runs the model; one when
        ONNX Runtime does, since PyTorch then only assembles the batch and runs NMS, and a second
        thread team would fight ONNX Runtime's for the cores (measured here: 18 -> 23.5 images/s at c=1)."""
        return threads if isinstance(self.backend, TorchBackend) else 1

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
        batch, failures = to_batch(list(images), self.backend.device, self.input_size)
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
            found = Detections.from_nms(rows.float().cpu().numpy())
            boxes = image.letterbox.boxes_to_source(found.xyxy, image.width, image.height)
            results.append(Detections(boxes, found.confidence, self._class_ids[found.class_id]))
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


def pick_faster(engines: Sequence[InferenceEngine], batch_size: int, repeats: int = 3) -> tuple[InferenceEngine, str]:
    """The engine with the shortest median batch time on this machine (the others are dropped),
    and the times it was chosen by, as text."""
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
    times = ", ".join(f"{e.backend.name} {t * 1000:.0f} ms" for e, t in zip(engines, medians))
    return engines[best], f" (fastest here per batch of {batch_size}: {times})"
