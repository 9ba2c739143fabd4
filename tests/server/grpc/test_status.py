"""The one table from domain errors to gRPC status codes."""

import logging

import grpc
import pytest

from server.core import errors
from server.grpc.status import INTERNAL_MESSAGE, STATUS_CODES, code_of, status_of


@pytest.mark.parametrize("error,code", [
    (errors.InvalidInput("bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ImageTooLarge("big"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.UndecodableImage("junk"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.Overloaded("busy", retry_after_ms=100), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.DeadlineExpired("late"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.NotReady("wait"), grpc.StatusCode.UNAVAILABLE),
    (errors.ModelError("no file"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unsupported("not here"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.InferenceFailed("boom"), grpc.StatusCode.INTERNAL),
    (errors.Unauthenticated("who"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED),
])
def test_domain_errors_keep_their_message_and_get_their_code(error, code):
    assert status_of(error) == (code, str(error))


def test_every_kind_of_domain_error_is_in_the_table():
    kinds = [k for k in vars(errors).values() if isinstance(k, type) and issubclass(k, errors.WildscreenError)]
    direct = {k for k in kinds if k.__base__ is errors.WildscreenError}
    assert direct and direct <= set(STATUS_CODES), direct - set(STATUS_CODES)


def test_anything_else_is_internal_with_a_generic_message_and_logged(caplog):
    with caplog.at_level(logging.ERROR, logger="server.grpc.status"):
        code, message = status_of(KeyError("/secret/path in a traceback"), request_id="r-7")
    assert (code, message) == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    assert "secret" not in message
    (record,) = caplog.records
    assert record.fields == {"request_id": "r-7"} and record.exc_info[0] is KeyError
    assert code_of(RuntimeError()) == grpc.StatusCode.INTERNAL
