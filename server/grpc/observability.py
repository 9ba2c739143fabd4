"""The gRPC edge's observability: one interceptor counts every RPC by its final status code
(wildscreen_requests_total{rpc,code} of `server.grpc.metrics`) and writes the structured access
log, one line per RPC, without image bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from server.grpc.metrics import GrpcMetrics
from server.grpc.status import code_of

access_log = logging.getLogger("wildscreen.access")


def _final_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    return grpc.StatusCode.CANCELLED if isinstance(error, asyncio.CancelledError) else code_of(error)


REFUSAL_LOG_INTERVAL_S = 1.0
"""Refusals (RESOURCE_EXHAUSTED) are logged as one line per interval with their count: a retry
storm must not turn the access log into the server's main work."""


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC by final status and writes one access-log line per RPC (no image bytes),
    except refusals, which are summed into at most one line a second."""

    def __init__(self, metrics: GrpcMetrics | None) -> None:
        self.metrics = metrics
        self._refusals_unlogged = 0
        self._refusal_logged_at = 0.0

    def _record(self, method: str, context, request_id: str, error: BaseException | None, start: float, items: int | None) -> None:
        code = _final_code(context, error)
        rpc = method.rsplit("/", 1)[-1]
        if self.metrics is not None:
            self.metrics.requests.labels(rpc, code.name).inc()
        now = time.monotonic()
        extra: dict = {}
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            self._refusals_unlogged += 1
            if now - self._refusal_logged_at < REFUSAL_LOG_INTERVAL_S:
                return
            extra = {"refused": self._refusals_unlogged, "refused_since_s": round(min(now - self._refusal_logged_at, 3600.0), 2)}
            self._refusals_unlogged, self._refusal_logged_at = 0, now
        fields = {"rpc": rpc, "peer": context.peer(), "status": code.name, "ms": round((now - start) * 1000, 2), **extra}
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
