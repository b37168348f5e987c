"""The one error → wire status table (raptor.server.errors): HTTP, error code and gRPC name."""

from __future__ import annotations

import logging

import grpc
import pytest

from raptor.engine.ingest import InvalidRows
from raptor.errors import (
    DependencyCycleError,
    FeatureTimeout,
    InvalidArgument,
    ManifestError,
    MissingKeyError,
    NotFound,
    NotReady,
    ProgramRuntimeError,
    RaptorError,
    ReadOnlyError,
    SelectorError,
    StateUnavailable,
    ValueTypeError,
)
from raptor.server.errors import (
    ClientDisconnected,
    DataSourceKindError,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    error_document,
    grpc_status_for,
    http_status_for,
    status_for,
)

TABLE = [
    (InvalidArgument("x"), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    (SelectorError("x"), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    (MissingKeyError("x"), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    (ValueTypeError("x"), 422, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    (InvalidRows("default.src", [(0, "bad")]), 422, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    (NotFound("x"), 404, "NOT_FOUND", "NOT_FOUND"),
    (ReadOnlyError("x"), 409, "FAILED_PRECONDITION", "FAILED_PRECONDITION"),
    (DataSourceKindError("x"), 409, "FAILED_PRECONDITION", "FAILED_PRECONDITION"),
    (NotReady("x"), 503, "UNAVAILABLE", "UNAVAILABLE"),
    (FeatureTimeout("x"), 504, "DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"),
    (StateUnavailable("x"), 503, "UNAVAILABLE", "UNAVAILABLE"),
    (ProgramRuntimeError("x"), 502, "PROGRAM_ERROR", "UNKNOWN"),
    (ManifestError("x"), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    (DependencyCycleError(["a", "b"]), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    (PayloadTooLarge("x"), 413, "PAYLOAD_TOO_LARGE", "RESOURCE_EXHAUSTED"),
    (UnsupportedMediaType("x"), 415, "UNSUPPORTED_MEDIA_TYPE", "INVALID_ARGUMENT"),
    (MethodNotAllowed("x"), 405, "METHOD_NOT_ALLOWED", "UNIMPLEMENTED"),
    (ClientDisconnected("x"), 499, "CANCELLED", "CANCELLED"),
    (KeyError("x"), 500, "INTERNAL", "INTERNAL"),
]


@pytest.mark.parametrize(
    ("exc", "http", "code", "grpc_name"), TABLE, ids=[type(t[0]).__name__ for t in TABLE]
)
def test_each_error_has_one_http_status_code_and_grpc_status(
    exc: BaseException, http: int, code: str, grpc_name: str
) -> None:
    st = status_for(exc)

    assert (st.http, st.code, st.grpc) == (http, code, grpc_name)
    assert http_status_for(exc) == http
    assert grpc_status_for(exc) == grpc_name


@pytest.mark.parametrize("exc", [t[0] for t in TABLE], ids=[type(t[0]).__name__ for t in TABLE])
def test_grpc_names_are_real_grpc_status_codes(exc: BaseException) -> None:
    assert grpc.StatusCode[grpc_status_for(exc)].name == grpc_status_for(exc)


def test_a_new_subclass_takes_its_parents_row() -> None:
    class OddSelector(SelectorError):
        pass

    class Custom(RaptorError):
        pass

    assert status_for(OddSelector("x")).http == 400
    assert status_for(Custom("x")).http == 400


def test_only_state_outages_ask_for_a_retry() -> None:
    assert status_for(StateUnavailable("down")).retry_after == 1
    assert all(
        status_for(e).retry_after is None for e, *_ in TABLE if not isinstance(e, StateUnavailable)
    )


def test_only_foreign_exceptions_are_internal_errors() -> None:
    internal = [type(e).__name__ for e, *_ in TABLE if status_for(e).code == "INTERNAL"]

    assert internal == ["KeyError"]


def test_the_error_document_carries_code_and_message() -> None:
    st, doc = error_document(NotFound("feature default.x not found"))

    assert st.http == 404
    assert doc == {"error": {"code": "NOT_FOUND", "message": "feature default.x not found"}}


def test_invalid_rows_list_their_problems() -> None:
    _, doc = error_document(InvalidRows("default.src", [(0, "missing ts"), (3, "not an object")]))

    assert doc["error"]["problems"] == [
        {"row": 0, "reason": "missing ts"},
        {"row": 3, "reason": "not an object"},
    ]


def test_an_unknown_exception_is_logged_and_its_details_are_not_leaked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="raptor.server"):
        st, doc = error_document(ZeroDivisionError("secret internals"))

    assert st.http == 500
    assert doc["error"]["code"] == "INTERNAL"
    assert "secret" not in doc["error"]["message"]
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)
