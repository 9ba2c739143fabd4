"""Prometheus metrics and the structured access log, both fed by one interceptor.

    wildscreen_requests_total{rpc,code}           RPCs by method and final status code
    wildscreen_images_total{code}                 images screened (each image of a stream counts)
    wildscreen_latency_seconds{stage}             decode, queue, inference, total per image
    wildscreen_batch_size                         images per forward pass
    wildscreen_queue_depth                        images admitted and not answered yet
    wildscreen_detections_total{class}            detections listed, by class
    wildscreen_verdicts_total{verdict,class}      verdicts, by the class that decided them
    wildscreen_model_info{name,version,sha256,backend,device}
"""

from __future__ import annotations

import logging
import time

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from server.core.taxonomy import NAMES

access_log = logging.getLogger("wildscreen.access")

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("wildscreen_requests", "RPCs by method and final status code", ["rpc", "code"], registry=r)
        self.images = Counter("wildscreen_images", "Images screened, by status code", ["code"], registry=r)
        self.latency = Histogram("wildscreen_latency_seconds", "Per-image time by stage", ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("wildscreen_batch_size", "Images per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.in_flight = Gauge("wildscreen_queue_depth", "Images admitted and not answered yet", registry=r)
        self.detections = Counter("wildscreen_detections", "Detections listed, by class", ["class"], registry=r)
        self.verdicts = Counter("wildscreen_verdicts", "Verdicts, by the class that decided them", ["verdict", "class"], registry=r)
        self.model = Info("wildscreen_model", "The model serving now", registry=r)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def observe_model(self, name: str, version: str, sha256: str, backend: str, device: str) -> None:
        self.model.info({"name": name, "version": version, "sha256": sha256, "backend": backend, "device": device})

    def observe_image(self, code: grpc.StatusCode, result=None) -> None:
        self.images.labels(code.name).inc()
        if result is None:
            return
        t = result.timing
        for stage, ms in (("decode", t.decode_ms), ("queue", t.queue_ms), ("inference", t.inference_ms), ("total", t.total_ms)):
            self.latency.labels(stage).observe(ms / 1000.0)
        for class_id in result.detections.class_id:
            self.detections.labels(NAMES[int(class_id)]).inc()
        deciding = "none" if result.deciding_class is None else NAMES[result.deciding_class]
        self.verdicts.labels(result.verdict.name, deciding).inc()


def _final_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    import asyncio

    return grpc.StatusCode.CANCELLED if isinstance(error, asyncio.CancelledError) else grpc.StatusCode.UNKNOWN


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC by final status and writes one access-log line per RPC (no image bytes)."""

    def __init__(self, metrics: ServerMetrics | None) -> None:
        self.metrics = metrics

    def _record(self, method: str, context, request_id: str, error: BaseException | None, start: float, items: int | None) -> None:
        code = _final_code(context, error)
        rpc = method.rsplit("/", 1)[-1]
        if self.metrics is not None:
            self.metrics.requests.labels(rpc, code.name).inc()
        fields = {"rpc": rpc, "peer": context.peer(), "status": code.name, "ms": round((time.monotonic() - start) * 1000, 2)}
        if request_id:
            fields["request_id"] = request_id
        if items is not None:
            fields["images"] = items
        access_log.info("rpc", extra={"fields": fields})

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        record = self._record

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request, context):
                start, error = time.monotonic(), None
                try:
                    return await inner(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    record(method, context, getattr(request, "request_id", ""), error, start, None)

            return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer, handler.response_serializer)

        if handler.stream_stream or handler.unary_stream:
            inner = handler.stream_stream or handler.unary_stream
            make = grpc.stream_stream_rpc_method_handler if handler.stream_stream else grpc.unary_stream_rpc_method_handler

            async def streaming(request_or_iterator, context):
                start, error, count = time.monotonic(), None, 0
                try:
                    async for response in inner(request_or_iterator, context):
                        count += 1
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    record(method, context, "", error, start, count)

            return make(streaming, handler.request_deserializer, handler.response_serializer)
        return handler
