"""The screening core, protocol-agnostic: bytes in, verdict and detections out.

    admit -> validate -> decode + letterbox (worker threads) -> batcher -> model -> verdict -> overlay

The gRPC servicer only translates protos to `ScreenJob` and `ScreenResult` back. Every result
names the model manifest and the thresholds that produced it.

Admission is bounded: at most `max_queue_size + max_batch_size` images are between arrival and
answer; the next one gets Overloaded at once. A model swap (hot reload) loads and warms up a new
`ModelRuntime`, points new requests at it, and closes the old one once the requests that started
on it have finished: no request is dropped and each is answered by one model from start to end.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from server.config import CoreSettings
from server.core.decision import Decision, DecisionRule
from server.core.detections import Detections
from server.core.engine import NMS_MAX_DETECTIONS
from server.core.errors import DeadlineExpired, InvalidInput, ModelError, NotReady, Overloaded
from server.core.decoding import DecodedImage, encode
from server.core.manifest import ModelManifest
from server.core.metrics import ScreeningMetrics
from server.core.embedding import ImageEmbedding
from server.core.imagehead import ImageScores
from server.core.matching import BankMatcher, Match
from server.core.runtime import BatchItem, ModelRuntime
from server.core.overlay import HeatMark, draw_overlay
from server.core.pdq import PdqDihedral, query_variants
from server.core.pacing import RefusalPacer
from server.core.policy import ClassPolicy, Verdict

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
    overlay_weaker: bool = False
    """Also draw, faded, the detections below their class's review threshold."""


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
    detection_verdicts: np.ndarray
    """`Verdict` numbers, one per listed detection."""
    width: int
    height: int
    model: ModelManifest
    thresholds: tuple[ClassPolicy, ...]
    min_confidence: float
    timing: Timing
    batch_size: int
    deciding_class: int | None
    """The class behind a REVIEW or FLAG (the strongest detection's, or the head's); None for CLEAR."""
    overlay: bytes = b""
    image_scores: ImageScores | None = None
    """The image-level head's scores of the screened classes, with heat boxes; None without a head."""
    image_verdicts: np.ndarray | None = None
    image_thresholds: tuple[ClassPolicy, ...] = ()
    """The head's thresholds of the screened classes (empty without a head)."""
    decided_by: str = ""
    """"known image", "detector" or "image-level head" for REVIEW and FLAG; "" for CLEAR."""
    matches: tuple[Match, ...] = ()
    """Banked photos this image is a copy of, nearest first."""
    embedding: ImageEmbedding | None = None
    """The image's embedding where the model has the signal: for the review feed (a confirmed photo's
    bank entry carries it), never in the answer."""


def validate(job: ScreenJob, default_max_detections: int, model: ModelManifest) -> tuple[frozenset[int] | None, int]:
    """Check a job before any work; returns (class ids to screen or None for all, max detections).
    The classes a caller may name are the ones `model` detects."""
    labels = model.labels
    if not math.isfinite(job.min_confidence) or not 0.0 <= job.min_confidence <= 1.0:
        raise InvalidInput(f"min_confidence {job.min_confidence} is not between 0 and 1")
    unknown = sorted({c for c in job.classes if c not in labels})
    if unknown:
        raise InvalidInput(f"unknown class name(s) {', '.join(map(repr, unknown))}; known classes: {', '.join(labels)}")
    if job.overlay not in OVERLAY_FORMATS:
        raise InvalidInput(f"overlay format {job.overlay!r} is not jpeg or png")
    class_ids = frozenset(labels[c] for c in job.classes) if job.classes else None
    max_detections = min(job.max_detections or default_max_detections, NMS_MAX_DETECTIONS)
    return class_ids, max_detections


REFUSAL_MEMORY_S = 5.0
"""How long a refused caller counts as waiting to come back (the longest pushback hint is 5 s)."""


class Screener:
    def __init__(self, config: CoreSettings, metrics: ScreeningMetrics | None = None,
                 matcher: BankMatcher | None = None) -> None:
        self.config = config
        """The core's settings only: an edge keeps its own (ports, TLS, workers) to itself."""
        self.metrics = metrics
        self.matcher = matcher
        """Known-image hash banks every image is matched against (None: no banks); the edge fills and refreshes it."""
        self.max_in_flight = config.max_queue_size + config.max_batch_size
        self.in_flight = 0
        self._refused = 0.0
        """Callers turned away lately: a count that fades with time constant REFUSAL_MEMORY_S."""
        self._refused_at = time.monotonic()
        self._pacer = RefusalPacer(config.max_refusals_per_s, config.max_waiting_refusal_bytes)
        self._pool = ThreadPoolExecutor(max_workers=config.decode_threads, thread_name_prefix="decode")
        self._runtime: ModelRuntime | None = None
        self._reload_lock = asyncio.Lock()

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
                new = await ModelRuntime.start(self.config, version, self.metrics, host_pixels=self.matcher is not None)
            except ModelError:
                raise
            except Exception as exc:  # the details are for the log, not for the caller
                log.exception("model load failed", extra={"fields": {"version": version or "(current)"}})
                raise ModelError(f"could not load model {version or '(current)'}; the server logged why") from exc
            if self.matcher is not None:  # before the swap: the new model's vectors are in memory when it serves
                spec = new.embedding.spec if new.embedding is not None else None
                await asyncio.get_running_loop().run_in_executor(
                    None, self.matcher.use_embedding, spec.name if spec else "", spec.dim if spec else 0,
                    spec.threshold if spec else 1.0)
            old, self._runtime = self._runtime, new
            m = new.manifest
            if self.metrics is not None:
                self.metrics.observe_model(m.name, m.version, m.sha256, new.engine.backend.name, new.engine.device)
            log.info("model loaded", extra={"fields": {"version": m.version, "backend": new.engine.backend.name,
                                                        "backend_reason": new.engine.backend_reason,
                                                        "device": new.engine.device, "trained": m.trained,
                                                        "model_threads": new.batcher.model_threads}})
        if old is not None:
            await old.retire()
            log.info("previous model retired", extra={"fields": {"version": old.manifest.version}})
        return new.manifest

    async def close(self) -> None:
        if self._runtime is not None:
            await self._runtime.retire()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _decode_and_prepare(self, runtime: ModelRuntime, job: ScreenJob, nms_confidence: float
                            ) -> tuple[DecodedImage | None, BatchItem, PdqDihedral | None, tuple[Match, ...], float]:
        """Decode once: the detector's letterboxed input, the head's crops and the PDQ hashes all come
        from these pixels. PDQ matching runs here too, in the decode threads, off the event loop;
        with an embedding signal it waits for the head's features (`_match_both`)."""
        start = time.perf_counter()
        image, prepared = runtime.decoder.prepare(job.image, keep_full_size=bool(job.overlay))
        crops = runtime.head.crops(image.pixels) if runtime.head is not None else None
        hashes, matches = None, ()
        if self.matcher is not None:
            hashes = query_variants(image.pixels)
            if runtime.embedding is None:
                matches = tuple(self.matcher.match(hashes.as_array(), hashes.quality))
        item = BatchItem(prepared, nms_confidence, crops)
        return (image if job.overlay else None), item, hashes, matches, (time.perf_counter() - start) * 1000.0

    def _match_both(self, hashes: PdqDihedral, embedding: ImageEmbedding | None) -> tuple[Match, ...]:
        """Both signals at once, once the head has pooled the image's features."""
        vector, model = (embedding.vector, embedding.model) if embedding is not None else (None, "")
        return tuple(self.matcher.match(hashes.as_array(), hashes.quality, vector, model))

    @staticmethod
    def _render_overlay(image: DecodedImage, manifest: ModelManifest, rule: DecisionRule, decision: Decision, fmt: str,
                        weaker: bool) -> bytes:
        verdict = decision.verdict
        strong = decision.detection_verdicts >= int(Verdict.REVIEW)
        # A CLEAR answer from a model whose card says it misses a class says so, from the manifest.
        notes = [f"{manifest.version} {manifest.limitations[p.label]}" for p in rule.screened
                 if verdict == Verdict.CLEAR and p.label in manifest.limitations]
        drawn = draw_overlay(image.pixels, decision.detections, f"{manifest.name} {manifest.version}",
                             strong=strong, weaker=weaker, verdict=verdict.name, notes=notes,
                             thresholds={p.id: (p.review_threshold, p.flag_threshold) for p in rule.screened},
                             heat=heat_marks(decision, rule, boxed=set(decision.detections.class_id[strong].tolist())))
        return encode(drawn, fmt)

    async def screen(self, job: ScreenJob, deadline: float | None = None) -> ScreenResult:
        """Screen one image; `deadline` is a time.monotonic() after which the caller has gone."""
        runtime = self.runtime  # this request stays on this model even if a reload swaps it
        if self.in_flight >= self.max_in_flight:
            raise await self._paced(self._refusal(runtime, f"server busy: {self.max_in_flight} images in flight; retry with backoff"),
                                    len(job.image), deadline)
        rate = runtime.batcher.images_per_second
        if deadline is not None and rate > 0:
            # Work it cannot finish in time is refused now, cheaply, rather than decoded and dropped later.
            wait_s = (self.in_flight + 1) / rate
            if time.monotonic() + wait_s > deadline:
                refusal = self._refusal(runtime, f"server busy: about {wait_s:.1f} s of work ahead, past this request's deadline; "
                                                 "retry with backoff")
                raise await self._paced(refusal, len(job.image), deadline)
        self.in_flight += 1
        runtime.acquire()
        if self.metrics is not None:
            self.metrics.in_flight.set(self.in_flight)
        try:
            return await self._screen(runtime, job, deadline)
        finally:
            runtime.release()
            self.in_flight -= 1
            if self.metrics is not None:
                self.metrics.in_flight.set(self.in_flight)

    async def _paced(self, refusal: Overloaded, request_bytes: int, deadline: float | None) -> Overloaded:
        """The refusal, once its turn has come (see server.core.pacing): at once unless refusals come faster
        than max_refusals_per_s."""
        wait_s = self._pacer.delay_s(request_bytes, deadline)
        if wait_s > 0:
            self._pacer.waiting_bytes += request_bytes
            try:
                await asyncio.sleep(wait_s)
            finally:
                self._pacer.waiting_bytes -= request_bytes
        return refusal

    def _refusal(self, runtime: ModelRuntime, message: str) -> Overloaded:
        """Overloaded, with a pushback hint of about when there will be room for this caller: after
        the images in flight and after the callers turned away lately, who come back too. A hint of
        the images in flight alone sends every refused caller back at once, to be refused again:
        under heavy overload the server then spends its cores saying no (issue 6: goodput)."""
        now = time.monotonic()
        self._refused = self._refused * math.exp(-(now - self._refused_at) / REFUSAL_MEMORY_S) + 1.0
        self._refused_at = now
        rate = runtime.batcher.images_per_second
        retry_after_ms = 200 if rate <= 0 else int(min(5000.0, max(50.0, 1000.0 * (self.in_flight + self._refused) / rate)))
        return Overloaded(message, retry_after_ms=retry_after_ms)

    async def _screen(self, runtime: ModelRuntime, job: ScreenJob, deadline: float | None) -> ScreenResult:
        start = time.perf_counter()
        class_ids, max_detections = validate(job, self.config.default_max_detections, runtime.manifest)
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExpired("deadline passed before screening started")
        manifest = runtime.manifest
        rule = DecisionRule.of(manifest, class_ids, job.min_confidence, max_detections)

        loop = asyncio.get_running_loop()
        runtime.decoding += 1
        try:
            image, item, hashes, matches, decode_ms = await loop.run_in_executor(
                self._pool, self._decode_and_prepare, runtime, job, rule.nms_confidence)
        finally:
            runtime.decoding -= 1
        prepared = item.prepared
        (raw, scores), batch = await runtime.batcher.submit(item, job.request_id, deadline)
        embedding = None
        if runtime.embedding is not None and scores is not None and scores.pooled is not None:
            embedding = ImageEmbedding(runtime.embedding.name, runtime.embedding.embed(scores.pooled[None, :])[0])
        if hashes is not None and runtime.embedding is not None:
            matches = await loop.run_in_executor(self._pool, self._match_both, hashes, embedding)

        decision = rule.decide(raw, scores, matches)
        verdict = decision.verdict
        overlay = b""
        if job.overlay:
            overlay = await loop.run_in_executor(self._pool, self._render_overlay, image, manifest, rule, decision,
                                                 job.overlay, job.overlay_weaker)
        return ScreenResult(
            request_id=job.request_id,
            verdict=verdict,
            detections=decision.detections,
            detection_verdicts=decision.detection_verdicts,
            width=prepared.width,
            height=prepared.height,
            model=manifest,
            thresholds=rule.screened,
            min_confidence=rule.listed_min,
            timing=Timing(decode_ms, batch.queue_ms, batch.inference_ms, (time.perf_counter() - start) * 1000.0),
            batch_size=batch.size,
            deciding_class=decision.deciding_class,
            overlay=overlay,
            image_scores=decision.image_scores,
            image_verdicts=decision.image_verdicts,
            image_thresholds=rule.screened_by_head,
            decided_by=decision.decided_by,
            matches=decision.matches,
            embedding=embedding,
        )


def heat_marks(decision: Decision, rule: DecisionRule, boxed: set[int]) -> list[HeatMark]:
    """The head's classes at REVIEW or FLAG that no detection at review level boxed: where it looked."""
    scores = decision.image_scores
    if scores is None or decision.image_verdicts is None:
        return []
    head = rule.head_policies or {}
    return [HeatMark(int(c), scores.heat_maps[int(c)], scores.heat_boxes[int(c)], float(score),
                     (head[int(c)].review_threshold, head[int(c)].flag_threshold))
            for c, score, v in zip(scores.class_ids, scores.scores, decision.image_verdicts)
            if v >= Verdict.REVIEW and int(c) not in boxed and int(c) in scores.heat_maps]
