"""wildscreen's domain errors: what went wrong, in the core's terms, with no protocol in sight.

    WildscreenError                 base; never raised itself
    ├── InvalidInput                the caller sent something we cannot screen
    │   ├── ImageTooLarge           bytes or pixels over the configured limit
    │   └── UndecodableImage        empty, unknown format, truncated or corrupt
    ├── Overloaded                  too much work in flight; retry after `retry_after_ms`
    ├── DeadlineExpired             the caller's deadline passed before the model ran
    ├── NotReady                    no model loaded yet, or shutting down
    ├── ModelError                  a model file or manifest is missing or wrong
    ├── Unsupported                 not possible in this server's set-up (ReloadModel under --workers)
    ├── InferenceFailed             the model raised while running a batch
    ├── Unauthenticated             missing or wrong API key
    ├── PermissionDenied            the key lacks the role
    ├── NotFound                    no such item (review queue)
    └── Conflict                    the item is claimed by someone else, or already decided

Messages of these errors are written for the caller and are sent to them as they are. Each edge
maps the kinds to its own codes in one table (`server.grpc.status` for gRPC). Anything else that
escapes is a bug: the edge answers with a generic internal error and logs the traceback.
"""

from __future__ import annotations


class WildscreenError(Exception):
    pass


class InvalidInput(WildscreenError):
    pass


class ImageTooLarge(InvalidInput):
    pass


class UndecodableImage(InvalidInput):
    pass


class Overloaded(WildscreenError):
    def __init__(self, message: str, retry_after_ms: int = 0) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class DeadlineExpired(WildscreenError):
    pass


class NotReady(WildscreenError):
    pass


class ModelError(WildscreenError):
    pass


class Unsupported(WildscreenError):
    pass


class InferenceFailed(WildscreenError):
    pass


class Unauthenticated(WildscreenError):
    pass


class PermissionDenied(WildscreenError):
    pass


class NotFound(WildscreenError):
    pass


class Conflict(WildscreenError):
    pass
