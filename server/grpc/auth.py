"""API keys on the gRPC edge: who may call, and which RPCs need the admin role.

Callers send `authorization: Bearer <key>`; the keys themselves live in `server.core.keys`.
Health checks and reflection stay open, for load balancers and probes.
"""

from __future__ import annotations

import grpc

from server.core.errors import PermissionDenied, Unauthenticated
from server.core.keys import KeyStore
from server.grpc.status import status_of

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")
ADMIN_METHODS = frozenset({"/wildscreen.v1.Screening/ReloadModel"})


def authorize(keys: KeyStore, method: str, metadata: tuple[tuple[str, str], ...]) -> str | None:
    """The caller's role, None for open services; raises Unauthenticated or PermissionDenied."""
    if method.startswith(OPEN_SERVICES):
        return None
    header = next((v for k, v in metadata if k == "authorization"), None)
    if not header or not header.startswith("Bearer "):
        raise Unauthenticated("missing API key: send metadata 'authorization: Bearer <key>'")
    role = keys.role_of(header[len("Bearer "):].strip())
    if role is None:
        raise Unauthenticated("unknown API key")
    if role == "review":
        raise PermissionDenied("a review key is for the review service (wildscreen-review), not for screening")
    if method in ADMIN_METHODS and role != "admin":
        raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} needs an admin key")
    return role


def _denying_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def deny_unary(request, context):
        await context.abort(code, message)

    async def deny_stream(request_or_iterator, context):
        await context.abort(code, message)
        yield  # pragma: no cover  (makes this an async generator)

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(deny_unary, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny_stream, handler.request_deserializer, handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(deny_unary, handler.request_deserializer, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(deny_stream, handler.request_deserializer, handler.response_serializer)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        try:
            authorize(self.keys, handler_call_details.method, tuple(handler_call_details.invocation_metadata or ()))
        except (Unauthenticated, PermissionDenied) as exc:
            return _denying_handler(handler, *status_of(exc))
        return handler
