"""The screening core, protocol-agnostic: bytes in, verdict and detections out.

    validate -> decode + letterbox (worker threads) -> batcher -> model -> verdict -> overlay

The gRPC servicer only translates protos to `ScreenJob` and `ScreenResult` back. Every result
names the model manifest and the thresholds that produced it. A model swap (hot reload) starts a
new `ModelRuntime`, points new requests at it and lets the old one finish what it holds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from server.batching import BatchInfo, DynamicBatcher
from server.config import ServerConfig
from server.detections import Detections
from server.engine import NMS_MAX_DETECTIONS, InferenceEngine, PreparedImage
from server.errors import InvalidInput, ModelError, NotReady
from server.imageio import DecodeLimits, encode
from server.manifest import ModelManifest, WeightsStore
from server.overlay import draw_overlay
from server.policy import ClassPolicy, Verdict, decide, verdicts_for
from server.taxonomy import LABELS, by_label

log = logging.getLogger(__name__)

OVERLAY_FORMATS = ("", "jpeg", "png")


@dataclass(frozen=True)
class ScreenJob:
    request_id: str
    image: bytes
    min_confidence: float = 0.0
    """0 = the model's default."""
    classes: tuple[str, ...] = ()
    """Empty = all classes."""
    overlay: str = ""
    """"", "jpeg" or "png"."""
    max_detections: int = 0
    """0 = the server's default."""


@dataclass(frozen=True)
class Timing:
    decode_ms: float
    queue_ms: float
    inference_ms: float
    total_ms: float


@dataclass(frozen=True)
class ScreenResult:
    request_id: str
    verdict: Verdict
    detections: Detections
    detection_verdicts: list[Verdict]
    width: int
    height: int
    model: ModelManifest
    thresholds: tuple[ClassPolicy, ...]
    min_confidence: float
    timing: Timing
    batch_size: int
    overlay: bytes = b""


@dataclass(frozen=True)
class _BatchItem:
    prepared: PreparedImage
    nms_confidence: float


@dataclass
class ModelRuntime:
    """One loaded model and the batcher that feeds it."""

    engine: InferenceEngine
    batcher: DynamicBatcher[_BatchItem, Detections]
    loaded_at: float = field(default_factory=time.time)

    @property
    def manifest(self) -> ModelManifest:
        return self.engine.manifest

    @classmethod
    async def start(cls, config: ServerConfig, version: str | None, on_batch=None) -> ModelRuntime:
        def load() -> InferenceEngine:
            engine = InferenceEngine.load(
                WeightsStore(config.weights_dir), version or None, config.device, config.backend,
                config.torch_threads, config.max_batch_size,
            )
            engine.warm_up(sorted({1, config.max_batch_size}))
            return engine

        engine = await asyncio.to_thread(load)

        def run_batch(items: list[_BatchItem]) -> list[Detections]:
            floor = min(item.nms_confidence for item in items)
            return engine.run([item.prepared for item in items], floor)

        batcher: DynamicBatcher[_BatchItem, Detections] = DynamicBatcher(
            run_batch, config.max_batch_size, config.max_batch_delay_ms, config.max_queue_size, on_batch
        )
        batcher.start()
        return cls(engine, batcher)


def validate(job: ScreenJob, default_max_detections: int) -> tuple[frozenset[int] | None, int]:
    """Check a job before any work; returns (class ids to screen or None for all, max detections)."""
    if not math.isfinite(job.min_confidence) or not 0.0 <= job.min_confidence <= 1.0:
        raise InvalidInput(f"min_confidence {job.min_confidence} is not between 0 and 1")
    unknown = sorted({c for c in job.classes if c not in LABELS})
    if unknown:
        raise InvalidInput(f"unknown class name(s) {', '.join(map(repr, unknown))}; known classes: {', '.join(LABELS)}")
    if job.overlay not in OVERLAY_FORMATS:
        raise InvalidInput(f"overlay format {job.overlay!r} is not jpeg or png")
    class_ids = frozenset(by_label(c).id for c in job.classes) if job.classes else None
    max_detections = min(job.max_detections or default_max_detections, NMS_MAX_DETECTIONS)
    return class_ids, max_detections


class Screener:
    def __init__(self, config: ServerConfig, on_batch=None) -> None:
        self.config = config
        self.limits = DecodeLimits(config.max_request_bytes, config.max_image_pixels)
        self._pool = ThreadPoolExecutor(max_workers=config.decode_workers or None, thread_name_prefix="decode")
        self._runtime: ModelRuntime | None = None
        self._reload_lock = asyncio.Lock()
        self._on_batch = on_batch

    @property
    def runtime(self) -> ModelRuntime:
        if self._runtime is None:
            raise NotReady("no model loaded yet")
        return self._runtime

    async def load(self, version: str | None = None) -> ModelManifest:
        """Load and warm up `version` (default: current), then swap it in; the old model finishes
        the requests it holds. On failure the old model keeps serving and ModelError is raised."""
        async with self._reload_lock:
            try:
                new = await ModelRuntime.start(self.config, version, self._on_batch)
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"could not load model {version or '(current)'}: {exc}") from exc
            old, self._runtime = self._runtime, new
            log.info("model loaded", extra={"fields": {"version": new.manifest.version, "backend": new.engine.backend.name,
                                                        "device": new.engine.device}})
        if old is not None:
            await old.batcher.close()
        return new.manifest

    async def close(self) -> None:
        if self._runtime is not None:
            await self._runtime.batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _decode_and_prepare(self, engine: InferenceEngine, job: ScreenJob):
        start = time.perf_counter()
        image, prepared = engine.decode_and_prepare(job.image, self.limits, keep_full_size=bool(job.overlay))
        return (image if job.overlay else None), prepared, (time.perf_counter() - start) * 1000.0

    def _render_overlay(self, image, detections: Detections, caption: str, fmt: str) -> bytes:
        return encode(draw_overlay(image.pixels, detections, caption), fmt)

    async def screen(self, job: ScreenJob, deadline: float | None = None) -> ScreenResult:
        """Screen one image; `deadline` is a time.monotonic() after which the caller has gone."""
        start = time.perf_counter()
        class_ids, max_detections = validate(job, self.config.default_max_detections)
        runtime = self.runtime  # this request stays on this model even if a reload swaps it
        manifest = runtime.manifest
        policies = manifest.policies
        screened = tuple(p for p in manifest.classes if class_ids is None or p.id in class_ids)
        listed_min = job.min_confidence or manifest.default_min_confidence
        nms_confidence = min([listed_min] + [p.review_threshold for p in screened])

        loop = asyncio.get_running_loop()
        image, prepared, decode_ms = await loop.run_in_executor(self._pool, self._decode_and_prepare, runtime.engine, job)
        raw, batch = await runtime.batcher.submit(_BatchItem(prepared, nms_confidence), job.request_id, deadline)

        candidates = raw.of_classes(class_ids)
        verdict = decide(verdicts_for(policies, candidates.class_id, candidates.confidence))
        listed = candidates.above(listed_min)[:max_detections]
        overlay = b""
        if job.overlay:
            caption = f"{verdict.name} - {manifest.name} {manifest.version}"
            overlay = await loop.run_in_executor(self._pool, self._render_overlay, image, listed, caption, job.overlay)
        return ScreenResult(
            request_id=job.request_id,
            verdict=verdict,
            detections=listed,
            detection_verdicts=verdicts_for(policies, listed.class_id, listed.confidence),
            width=prepared.width,
            height=prepared.height,
            model=manifest,
            thresholds=screened,
            min_confidence=listed_min,
            timing=Timing(decode_ms, batch.queue_ms, batch.inference_ms, (time.perf_counter() - start) * 1000.0),
            batch_size=batch.size,
            overlay=overlay,
        )
