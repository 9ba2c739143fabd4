"""The one table from domain errors to gRPC status codes, and the caller-facing message.

An HTTP edge gets its own table of the same kinds; the core never knows either. Anything that is
not a `WildscreenError` is a bug: INTERNAL with a generic message for the caller, and the
traceback, with the request id, in the log.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable

import grpc

from server.core.errors import (
    Conflict,
    DeadlineExpired,
    InferenceFailed,
    InvalidInput,
    ModelError,
    NotFound,
    NotReady,
    Overloaded,
    PermissionDenied,
    Unauthenticated,
    Unsupported,
    WildscreenError,
)

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[WildscreenError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExpired: grpc.StatusCode.DEADLINE_EXCEEDED,
    NotReady: grpc.StatusCode.UNAVAILABLE,
    ModelError: grpc.StatusCode.FAILED_PRECONDITION,
    Unsupported: grpc.StatusCode.FAILED_PRECONDITION,
    InferenceFailed: grpc.StatusCode.INTERNAL,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    # The review queue's kinds: no RPC raises them today, but the table covers the whole tree.
    NotFound: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.ABORTED,
}

INTERNAL_MESSAGE = "internal error; the server logged the details"
CODE_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def code_of(error: BaseException) -> grpc.StatusCode:
    """The status code of `error`: its nearest kind in the table; INTERNAL for anything else."""
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return grpc.StatusCode.INTERNAL


def status_of(error: BaseException, request_id: str = "") -> tuple[grpc.StatusCode, str]:
    """The status code and caller-facing message for `error`; a bug is logged with the request id."""
    if isinstance(error, WildscreenError):
        return code_of(error), str(error)
    log.error("request failed", exc_info=error, extra={"fields": {"request_id": request_id}})
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


def answers_with_status(method: Callable) -> Callable:
    """Wrap an RPC method (coroutine or async generator) so that whatever it raises reaches the
    caller as the table's status: nothing unexpected leaves as gRPC's UNKNOWN with internals."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def streaming(self, request_or_iterator, context):
            try:
                async for response in method(self, request_or_iterator, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await context.abort(*status_of(exc))

        return streaming

    @functools.wraps(method)
    async def unary(self, request, context):
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await context.abort(*status_of(exc, getattr(request, "request_id", "")))

    return unary
