"""The one table from errors to wire statuses: HTTP status, error code, gRPC status name.

Domain errors (:mod:`raptor.errors`) know nothing about HTTP or gRPC (STYLE rule 8); this module
is the only place that decides how each one looks on the wire. It imports neither starlette nor
grpc: the REST accessor uses :func:`status_for` / :func:`error_document`, the gRPC accessor uses
:func:`grpc_status_for` (a status *name* such as ``"NOT_FOUND"``, to look up in
``grpc.StatusCode``).

================================  =====  ======================  ======================
error                             HTTP   ``error.code``          gRPC
================================  =====  ======================  ======================
InvalidArgument                   400    INVALID_ARGUMENT        INVALID_ARGUMENT
  SelectorError, MissingKeyError  400    INVALID_ARGUMENT        INVALID_ARGUMENT
  ValueTypeError                  422    INVALID_ARGUMENT        INVALID_ARGUMENT
  InvalidRows (push API)          422    INVALID_ARGUMENT        INVALID_ARGUMENT
NotFound                          404    NOT_FOUND               NOT_FOUND
ReadOnlyError                     409    FAILED_PRECONDITION     FAILED_PRECONDITION
NotReady                          503    UNAVAILABLE             UNAVAILABLE
FeatureTimeout                    504    DEADLINE_EXCEEDED       DEADLINE_EXCEEDED
StateUnavailable                  503    UNAVAILABLE             UNAVAILABLE (Retry-After: 1)
ProgramRuntimeError               502    PROGRAM_ERROR           UNKNOWN
any other RaptorError             400    INVALID_ARGUMENT        INVALID_ARGUMENT
PayloadTooLarge (REST only)       413    PAYLOAD_TOO_LARGE       RESOURCE_EXHAUSTED
UnsupportedMediaType (REST only)  415    UNSUPPORTED_MEDIA_TYPE  INVALID_ARGUMENT
MethodNotAllowed (REST only)      405    METHOD_NOT_ALLOWED      UNIMPLEMENTED
ClientDisconnected (REST only)    499    CANCELLED               CANCELLED
DataSourceKindError (push API)    409    FAILED_PRECONDITION     FAILED_PRECONDITION
anything else (a Raptor bug)      500    INTERNAL                INTERNAL
================================  =====  ======================  ======================

Decisions:

* ``ValueTypeError`` is 422 on REST: the request is well-formed JSON aimed at a real feature,
  but its value does not fit the feature's primitive (the usual meaning of 422). gRPC has no
  such distinction: ``INVALID_ARGUMENT``.
* ``ProgramRuntimeError`` is the *feature's program* failing (it raised, or returned garbage),
  not the request: the accessor is a gateway in front of user code that misbehaved, hence
  ``502 Bad Gateway`` (distinct from 500, which is reserved for Raptor's own bugs). On gRPC it
  is ``UNKNOWN``, which is what gRPC itself reports when a handler's user code raises.
* ``NotReady`` (an asset that is deployed but invalid, or whose builder is unavailable) and
  ``StateUnavailable`` are both ``503 UNAVAILABLE``; only the latter carries ``Retry-After``
  because retrying helps within seconds.
* A client that hangs up while sending its body gets no answer; ``499`` (nginx's "client closed
  request") only shows in metrics, and it is not logged as an internal error.
* Errors are matched on the exception's MRO, most specific class first, so a new subclass of
  e.g. ``InvalidArgument`` gets its parent's row without touching this table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from raptor.engine.ingest import InvalidRows
from raptor.errors import (
    FeatureTimeout,
    InvalidArgument,
    NotFound,
    NotReady,
    ProgramRuntimeError,
    RaptorError,
    ReadOnlyError,
    StateUnavailable,
    ValueTypeError,
)

__all__ = [
    "ClientDisconnected",
    "DataSourceKindError",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "ProtocolError",
    "UnsupportedMediaType",
    "WireStatus",
    "error_document",
    "grpc_status_for",
    "http_status_for",
    "status_for",
]

log = logging.getLogger("raptor.server")


@dataclass(frozen=True, slots=True)
class WireStatus:
    """How one kind of error looks on the wire."""

    http: int
    code: str
    grpc: str
    retry_after: int | None = None


class ProtocolError(Exception):
    """A request the transport rejects before it reaches the engine (REST framing problems).

    Not a :class:`~raptor.errors.RaptorError`: these are about HTTP, not about features.
    """


class PayloadTooLarge(ProtocolError):
    """The request body is larger than the server accepts."""


class UnsupportedMediaType(ProtocolError):
    """The request body's content type is not one the route reads."""


class MethodNotAllowed(ProtocolError):
    """The route exists but not for this HTTP method; ``allowed`` lists the methods it has."""

    def __init__(self, message: str, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


class ClientDisconnected(ProtocolError):
    """The client went away before it finished sending the request."""


class DataSourceKindError(RaptorError):
    """Rows were pushed to a DataSource whose kind is not ``push``."""


INTERNAL = WireStatus(500, "INTERNAL", "INTERNAL")
_INVALID = WireStatus(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")

_TABLE: dict[type[BaseException], WireStatus] = {
    InvalidArgument: _INVALID,
    ValueTypeError: WireStatus(422, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    InvalidRows: WireStatus(422, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    NotFound: WireStatus(404, "NOT_FOUND", "NOT_FOUND"),
    ReadOnlyError: WireStatus(409, "FAILED_PRECONDITION", "FAILED_PRECONDITION"),
    DataSourceKindError: WireStatus(409, "FAILED_PRECONDITION", "FAILED_PRECONDITION"),
    NotReady: WireStatus(503, "UNAVAILABLE", "UNAVAILABLE"),
    FeatureTimeout: WireStatus(504, "DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"),
    StateUnavailable: WireStatus(503, "UNAVAILABLE", "UNAVAILABLE", retry_after=1),
    ProgramRuntimeError: WireStatus(502, "PROGRAM_ERROR", "UNKNOWN"),
    RaptorError: _INVALID,
    PayloadTooLarge: WireStatus(413, "PAYLOAD_TOO_LARGE", "RESOURCE_EXHAUSTED"),
    UnsupportedMediaType: WireStatus(415, "UNSUPPORTED_MEDIA_TYPE", "INVALID_ARGUMENT"),
    MethodNotAllowed: WireStatus(405, "METHOD_NOT_ALLOWED", "UNIMPLEMENTED"),
    ClientDisconnected: WireStatus(499, "CANCELLED", "CANCELLED"),
    ProtocolError: _INVALID,
}

_resolved: dict[type[BaseException], WireStatus] = {}


def status_for(exc: BaseException) -> WireStatus:
    """The wire status of ``exc``: the row of its most specific class in the table, else
    500 INTERNAL (a bug in Raptor: log it with :func:`error_document`)."""
    tp = type(exc)
    hit = _resolved.get(tp)
    if hit is None:
        hit = next((_TABLE[c] for c in tp.__mro__ if c in _TABLE), INTERNAL)
        _resolved[tp] = hit
    return hit


def http_status_for(exc: BaseException) -> int:
    """The HTTP status code of ``exc`` (REST)."""
    return status_for(exc).http


def grpc_status_for(exc: BaseException) -> str:
    """The gRPC status code *name* of ``exc`` (e.g. ``"NOT_FOUND"``); ``grpc.StatusCode[name]``
    gives the enum member."""
    return status_for(exc).grpc


def error_document(exc: BaseException) -> tuple[WireStatus, dict[str, Any]]:
    """The status and JSON body ``{"error": {"code", "message", ...}}`` for ``exc``.

    Unknown (non-Raptor, non-protocol) exceptions are logged with their traceback and answered
    with a generic message, so internals never leak to clients. ``InvalidRows`` adds
    ``problems: [{"row", "reason"}]``.
    """
    st = status_for(exc)
    if st is INTERNAL:
        log.error("internal error while serving a request", exc_info=exc)
        message = "internal error (logged by the server)"
    else:
        message = str(exc) or type(exc).__name__
    err: dict[str, Any] = {"code": st.code, "message": message}
    if isinstance(exc, InvalidRows):
        err["problems"] = [{"row": i, "reason": r} for i, r in exc.problems]
    return st, {"error": err}
