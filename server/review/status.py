"""The review edge's ONE table from domain errors to HTTP status codes, and the error body.

The same kinds as `server.grpc.status`, in HTTP's terms. Anything that is not a `WildscreenError`
is a bug: 500 with a generic message for the caller, the traceback in the log.
"""

from __future__ import annotations

import logging

from server.core.errors import (
    Conflict,
    DeadlineExpired,
    ImageTooLarge,
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

HTTP_STATUS: dict[type[WildscreenError], int] = {
    ImageTooLarge: 413,
    InvalidInput: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    Overloaded: 503,
    NotReady: 503,
    DeadlineExpired: 504,
    ModelError: 500,
    Unsupported: 501,
    InferenceFailed: 500,
}

INTERNAL_MESSAGE = "internal error; the review service logged the details"


def http_status_of(error: BaseException) -> tuple[int, dict]:
    """The status and JSON body for `error`: its nearest kind in the table; 500 for a bug."""
    if isinstance(error, WildscreenError):
        for kind in type(error).__mro__:
            if kind in HTTP_STATUS:
                return HTTP_STATUS[kind], {"error": {"kind": kind.__name__, "message": str(error)}}
    log.error("request failed", exc_info=error)
    return 500, {"error": {"kind": "Internal", "message": INTERNAL_MESSAGE}}
