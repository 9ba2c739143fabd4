"""wildscreen's errors, and the one place that maps them to gRPC status codes.

    WildscreenError                 base; never raised itself
    ├── InvalidInput                the caller sent something we cannot screen -> INVALID_ARGUMENT
    │   ├── ImageTooLarge           bytes or pixels over the configured limit
    │   └── UndecodableImage        empty, unknown format, truncated or corrupt
    ├── Overloaded                  the queue is full; retry later -> RESOURCE_EXHAUSTED
    ├── DeadlineExpired             the caller's deadline passed before the model ran -> DEADLINE_EXCEEDED
    ├── NotReady                    no model loaded yet, or shutting down -> UNAVAILABLE
    ├── ModelError                  a model file or manifest is missing or wrong -> FAILED_PRECONDITION
    ├── InferenceFailed             the model raised while running a batch -> INTERNAL
    ├── Unauthenticated             missing or wrong API key -> UNAUTHENTICATED
    └── PermissionDenied            the key lacks the role -> PERMISSION_DENIED

Messages of these errors are written for the caller and are sent to them as they are. Anything
else that escapes is a bug: the caller gets INTERNAL with a generic message and the log gets the
traceback.
"""

from __future__ import annotations

import grpc


class WildscreenError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInput(WildscreenError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class ImageTooLarge(InvalidInput):
    pass


class UndecodableImage(InvalidInput):
    pass


class Overloaded(WildscreenError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_ms: int = 0) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class DeadlineExpired(WildscreenError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotReady(WildscreenError):
    code = grpc.StatusCode.UNAVAILABLE


class ModelError(WildscreenError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class InferenceFailed(WildscreenError):
    code = grpc.StatusCode.INTERNAL


class Unauthenticated(WildscreenError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(WildscreenError):
    code = grpc.StatusCode.PERMISSION_DENIED


INTERNAL_MESSAGE = "internal error; the server logged the details"


def to_status(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and caller-facing message for `error`."""
    if isinstance(error, WildscreenError):
        return error.code, str(error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
