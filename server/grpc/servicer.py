"""gRPC servicer: protos in, `Screener` calls, protos out. No model, queue or image code here.

Errors are translated by the one table in `server.grpc.status`: domain errors get their code and
their message, written for the caller; anything else is logged and answered INTERNAL, without
internals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc

from server.core.errors import Unsupported
from server.core.imagehead import HeadSpec
from server.core.manifest import ModelManifest
from server.core.matching import FLAG, REVIEW
from server.core.policy import ClassPolicy
from server.core.screening import ScreenJob, ScreenResult, Screener
from server.core.taxonomy import by_id
from server.grpc.review_feed import ReviewFeed
from server.grpc.status import CODE_BY_NUMBER, answers_with_status, status_of
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_OVERLAY = {pb.OVERLAY_FORMAT_NONE: "", pb.OVERLAY_FORMAT_JPEG: "jpeg", pb.OVERLAY_FORMAT_PNG: "png"}
_ACTION = {FLAG: pb.VERDICT_FLAG, REVIEW: pb.VERDICT_REVIEW}


def job_from_proto(request: pb.ScreenRequest) -> ScreenJob:
    return ScreenJob(
        request_id=request.request_id,
        image=request.image,
        min_confidence=request.min_confidence,
        classes=tuple(request.classes),
        overlay=_OVERLAY.get(request.overlay, f"#{request.overlay}"),
        max_detections=request.max_detections,
        overlay_weaker=request.overlay_weaker,
    )


def model_ref(manifest: ModelManifest) -> pb.ModelRef:
    return pb.ModelRef(name=manifest.name, version=manifest.version, sha256=manifest.sha256)


def head_ref(manifest: ModelManifest) -> pb.ModelRef | None:
    head = manifest.head_spec
    return None if head is None else pb.ModelRef(name=f"{manifest.name}-head", version=manifest.version, sha256=head.sha256)


def image_scores(result: ScreenResult) -> list[pb.ImageScore]:
    scores = result.image_scores
    if scores is None or result.image_verdicts is None:
        return []
    w, h = result.width, result.height
    out = []
    for c, score, verdict in zip(scores.class_ids, scores.scores, result.image_verdicts):
        x1, y1, x2, y2 = scores.heat_boxes.get(int(c), (0.0, 0.0, 0.0, 0.0))
        out.append(pb.ImageScore(label=by_id(int(c)).label, class_id=int(c), score=float(score), verdict=int(verdict),
                                 heat_box=pb.Box(x_min=x1 * w, y_min=y1 * h, x_max=x2 * w, y_max=y2 * h),
                                 heat_box_normalized=pb.Box(x_min=x1, y_min=y1, x_max=x2, y_max=y2)))
    return out


def class_info(policy: ClassPolicy) -> pb.ClassInfo:
    info = pb.ClassInfo(id=policy.id, label=policy.label, review_threshold=policy.review_threshold)
    if policy.flag_threshold is not None:
        info.flag_threshold = policy.flag_threshold
    return info


def response_from_result(result: ScreenResult) -> pb.ScreenResponse:
    d = result.detections
    w, h = result.width, result.height
    detections = [
        pb.Detection(
            label=by_id(int(c)).label,
            class_id=int(c),
            confidence=float(s),
            box=pb.Box(x_min=float(x1), y_min=float(y1), x_max=float(x2), y_max=float(y2)),
            box_normalized=pb.Box(x_min=float(x1) / w, y_min=float(y1) / h, x_max=float(x2) / w, y_max=float(y2) / h),
            verdict=int(v),
        )
        for (x1, y1, x2, y2), s, c, v in zip(d.xyxy, d.confidence, d.class_id, result.detection_verdicts)
    ]
    t = result.timing
    return pb.ScreenResponse(
        request_id=result.request_id,
        verdict=int(result.verdict),
        detections=detections,
        image_width=w,
        image_height=h,
        model=model_ref(result.model),
        timing=pb.Timing(
            decode_ms=t.decode_ms, queue_ms=t.queue_ms, inference_ms=t.inference_ms, total_ms=t.total_ms,
            batch_size=result.batch_size,
        ),
        overlay=result.overlay,
        thresholds=[class_info(p) for p in result.thresholds],
        min_confidence=result.min_confidence,
        image_scores=image_scores(result),
        head=head_ref(result.model),
        image_thresholds=[class_info(p) for p in result.image_thresholds],
        decided_by=result.decided_by,
        matches=[pb.KnownImageMatch(bank=m.bank, label=m.label, distance=m.distance, reference_id=m.reference_id,
                                    added=m.added_at.isoformat(), action=_ACTION[m.action], signal=m.signal,
                                    similarity=m.similarity)
                 for m in result.matches],
    )


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class ScreeningServicer(pb_grpc.ScreeningServicer):
    def __init__(self, screener: Screener, max_stream_in_flight: int, review_feed: ReviewFeed | None = None,
                 supervised: bool = False) -> None:
        self.screener = screener
        self.max_stream_in_flight = max_stream_in_flight
        self.review_feed = review_feed
        """Where REVIEW and FLAG results are offered (never awaited); None without --review-queue."""
        self.supervised = supervised
        """One of the --workers supervisor's processes: a ReloadModel call would reach this one alone."""

    async def _screen_one(self, request: pb.ScreenRequest, deadline: float | None) -> pb.ScreenResponse:
        """Screen one image; a failure becomes a response with `error` set (Screen turns it into a status)."""
        metrics = self.screener.metrics  # the core's: images by code, latency, detections, verdicts
        try:
            result = await self.screener.screen(job_from_proto(request), deadline)
        except Exception as exc:
            code, message = status_of(exc, request.request_id)
            if metrics is not None:
                metrics.observe_image(code.name)
            error = pb.Error(code=code.value[0], message=message, retry_after_ms=getattr(exc, "retry_after_ms", 0))
            return pb.ScreenResponse(request_id=request.request_id, error=error)
        if metrics is not None:
            metrics.observe_image(grpc.StatusCode.OK.name, result)
        response = response_from_result(result)
        if self.review_feed is not None:
            self.review_feed.offer(request, response, result.embedding)
        return response

    @answers_with_status
    async def Screen(self, request: pb.ScreenRequest, context: grpc.aio.ServicerContext) -> pb.ScreenResponse:
        response = await self._screen_one(request, deadline_of(context))
        if response.HasField("error"):
            if response.error.retry_after_ms:  # the standard hint gRPC's retry policies honour
                context.set_trailing_metadata((("grpc-retry-pushback-ms", str(response.error.retry_after_ms)),))
            await context.abort(CODE_BY_NUMBER[response.error.code], response.error.message)
        return response

    @answers_with_status
    async def ScreenStream(
        self, request_iterator: AsyncIterator[pb.ScreenRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ScreenResponse]:
        """Screen requests as they arrive (so that they batch with everyone else's), answer in order."""
        deadline = deadline_of(context)
        window = asyncio.Semaphore(self.max_stream_in_flight)
        in_order: asyncio.Queue[asyncio.Task[pb.ScreenResponse] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await window.acquire()
                    await in_order.put(asyncio.ensure_future(self._screen_one(request, deadline)))
            finally:
                await in_order.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while (task := await in_order.get()) is not None:
                response = await task
                window.release()
                yield response
            await reader  # re-raise a broken request stream
        finally:
            reader.cancel()
            while not in_order.empty():
                pending = in_order.get_nowait()
                if pending is not None:
                    pending.cancel()

    @answers_with_status
    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        return self.model_info()

    @answers_with_status
    async def ReloadModel(self, request: pb.ReloadModelRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        if self.supervised:
            raise Unsupported(
                "this server runs several worker processes and the call would reload one of them: make the "
                "version current (training promote) and send SIGHUP to the supervisor, which reloads them all"
            )
        await self.screener.load(request.version or None)
        return self.model_info()

    def model_info(self) -> pb.ModelInfo:
        runtime = self.screener.runtime
        manifest = runtime.manifest
        head = manifest.head_spec
        config = self.screener.config
        return pb.ModelInfo(
            model=model_ref(manifest),
            classes=[class_info(p) for p in manifest.classes],
            input_size=manifest.input_size,
            device=runtime.engine.device,
            backend=runtime.engine.backend.name,
            backend_reason=runtime.engine.backend_reason,
            max_batch_size=config.max_batch_size,
            trained=manifest.trained,
            default_min_confidence=manifest.default_min_confidence,
            max_batch_delay_ms=config.max_batch_delay_ms,
            head=head_ref(manifest),
            head_classes=[class_info(p) for p in head.classes] if head else [],
            head_backbone=head_description(head) if head else "",
            banks=self.bank_infos(),
            embedding=manifest.embedding_spec.name if manifest.embedding_spec else "",
            embedding_threshold=manifest.embedding_spec.threshold if manifest.embedding_spec else 0.0,
        )

    def bank_infos(self) -> list[pb.BankInfo]:
        matcher = self.screener.matcher
        if matcher is None:
            return []
        snapshot = matcher.snapshot
        vectors = snapshot.sizes(with_embedding=True)
        return [pb.BankInfo(name=name, action=_ACTION.get(snapshot.actions.get(name, REVIEW), pb.VERDICT_REVIEW), entries=size,
                            embeddings=vectors.get(name, 0))
                for name, size in sorted(snapshot.sizes().items())]


def head_description(head: HeadSpec) -> str:
    pooling = "whole image" if head.features == "whole" else \
        "whole image + max over " + ", ".join(f"{g}x{g}" for g in head.tiles) + " tiles"
    return f"{head.backbone} (EfficientNet, ImageNet, {head.input_size} px): {pooling}"
