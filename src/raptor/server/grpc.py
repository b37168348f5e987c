"""The gRPC accessor: ``core.v1alpha1.EngineService`` over the engine, plus health and reflection.

:func:`create_grpc_server` builds a ``grpc.aio`` server (not started) that serves

* ``core.v1alpha1.EngineService`` — wire-compatible with upstream Raptor's proto
  (``proto/core/v1alpha1``): ``FeatureDescriptor``, ``Get``, ``Set``, ``Append``, ``Incr``,
  ``Update``, plus Raptor's ``BatchGet``;
* ``grpc.health.v1.Health`` — ``SERVING`` while ``engine.state.ping()`` answers within 2 s,
  else ``NOT_SERVING`` (checked on each ``Check``/``List``; ``Watch`` polls every 5 s);
* server reflection (``grpc.reflection.v1alpha``) listing the three services.

This module only translates (messages ⇄ engine calls, errors → status codes); the semantics
live in :class:`raptor.engine.engine.Engine` and the message mapping in
:mod:`raptor.server.grpc_messages`. It is the only module of Raptor that imports ``grpc``.

Contract (SPEC 5 and 8):

* every response echoes the request's ``uuid``, or carries a new UUID4 when it was empty;
* a selector without namespace means ``default``; ``FeatureValue.fresh`` is always set and
  ``FeatureDescriptor.keys`` filled; a known feature without a value is ``OK`` with
  ``FeatureValue.value`` unset;
* errors: :class:`~raptor.errors.RaptorError` is caught at this boundary and mapped by the one
  table, :func:`raptor.server.errors.grpc_status_for` — bad input (malformed selector, missing
  key, wrong value type, an empty ``value`` oneof...) is ``INVALID_ARGUMENT``, an unknown
  feature ``NOT_FOUND``, a write to a model ``FAILED_PRECONDITION``, a feature timeout
  ``DEADLINE_EXCEEDED``, state outages ``UNAVAILABLE``. Anything else is a Raptor bug: logged
  with its traceback and answered ``INTERNAL`` with a generic message.

Hot path (``Get``): parse the selector (memoized), look the feature up, read, and build the
response; the ``FeatureDescriptor`` of each feature is built once per catalog and reused.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from raptor.api.names import parse_selector
from raptor.api.proto.core.v1alpha1 import api_pb2
from raptor.engine.catalog import AssetStatus, Catalog, ModelRuntime
from raptor.engine.engine import Engine
from raptor.engine.pipeline import WriteResult
from raptor.errors import InvalidArgument, StateUnavailable
from raptor.server.errors import grpc_status_for
from raptor.server.grpc_messages import (
    descriptor_to_proto,
    scalar_from_proto,
    timestamp_from_proto,
    timestamp_to_proto,
    value_from_proto,
)
from raptor.server.grpc_wire import (
    datetime_micros,
    encode_batch_reply,
    encode_get_reply,
)

__all__ = ["SERVICE_NAME", "EngineServicer", "HealthServicer", "create_grpc_server"]

log = logging.getLogger("raptor.server.grpc")

SERVICE_NAME: str = api_pb2.DESCRIPTOR.services_by_name["EngineService"].full_name
"""``core.v1alpha1.EngineService``."""

MAX_BATCH_CELLS = 100_000
"""``BatchGet`` reads at most this many (selector, entity) cells per call."""

StatusSource = Callable[[], Mapping[str, AssetStatus]]
"""Returns the status of every asset keyed ``Kind/fqn`` (e.g. ``LocalControlPlane.statuses``)."""

_R = TypeVar("_R")


def _new_uuid(given: str) -> str:
    return given or str(uuid.uuid4())


class EngineServicer:
    """``core.v1alpha1.EngineService``: translate each RPC into one engine call.

    ``statuses`` is where ``FeatureDescriptor`` reads an asset's status from (default: the
    engine's catalog).
    """

    def __init__(self, engine: Engine, statuses: StatusSource | None = None) -> None:
        self._engine = engine
        self._statuses = statuses
        self._descriptors: dict[str, bytes] = {}
        self._catalog: Catalog | None = None

    # -- plumbing --------------------------------------------------------------------------

    async def _call(self, rpc: str, context: Any, work: Awaitable[_R]) -> _R:
        """Await ``work``; turn an exception into the status of the one error table."""
        try:
            return await work
        except Exception as exc:  # the service boundary: every error maps to a status
            await _abort(rpc, context, exc)
            raise  # not reached: abort() raises

    def _descriptor(self, fqn: str) -> bytes:
        """The serialized descriptor of a deployed feature or model, built once per catalog."""
        catalog = self._engine.catalog
        if catalog is not self._catalog:
            self._descriptors = {}
            self._catalog = catalog
        desc = self._descriptors.get(fqn)
        if desc is None:
            msg = descriptor_to_proto(self._engine.descriptor(fqn))
            desc = self._descriptors[fqn] = msg.SerializeToString()
        return desc

    # -- reads -----------------------------------------------------------------------------

    async def Get(self, request: api_pb2.GetRequest, context: Any) -> bytes:
        """Answers the serialized ``GetResponse`` (registered without a serializer): the hot
        path, so no message is built and no wrapper coroutine awaited."""
        try:
            # A string selector takes the engine's memoized path (parse + lookup + checks).
            fv = await self._engine.get(request.selector, dict(request.keys))
            return encode_get_reply(
                _new_uuid(request.uuid),
                fv.selector,
                fv.keys,
                fv.value,
                None if fv.timestamp is None else datetime_micros(fv.timestamp),
                fv.fresh,
                self._descriptor(fv.fqn),
            )
        except Exception as exc:  # the service boundary: every error maps to a status
            await _abort("Get", context, exc)
            raise  # not reached: abort() raises

    async def FeatureDescriptor(
        self, request: api_pb2.FeatureDescriptorRequest, context: Any
    ) -> api_pb2.FeatureDescriptorResponse:
        return await self._call("FeatureDescriptor", context, self._feature_descriptor(request))

    async def _feature_descriptor(
        self, request: api_pb2.FeatureDescriptorRequest
    ) -> api_pb2.FeatureDescriptorResponse:
        rt = self._engine.descriptor(request.selector)
        statuses = self._engine.catalog.statuses if self._statuses is None else self._statuses()
        kind = "Model" if isinstance(rt, ModelRuntime) else "Feature"
        return api_pb2.FeatureDescriptorResponse(
            uuid=_new_uuid(request.uuid),
            feature_descriptor=descriptor_to_proto(rt, statuses.get(f"{kind}/{rt.fqn}")),
        )

    async def BatchGet(self, request: api_pb2.BatchGetRequest, context: Any) -> bytes:
        """Answers the serialized ``BatchGetResponse`` (registered without a serializer)."""
        return await self._call("BatchGet", context, self._batch_get(request))

    async def _batch_get(self, request: api_pb2.BatchGetRequest) -> bytes:
        if not request.selectors:
            raise InvalidArgument("selectors: name at least one selector")
        cells = len(request.selectors) * len(request.entities)
        if cells > MAX_BATCH_CELLS:
            raise InvalidArgument(
                f"batch of {cells} cells (selectors x entities) is over the limit of "
                f"{MAX_BATCH_CELLS}"
            )
        sels = [parse_selector(s) for s in request.selectors]
        entities = [dict(e.keys) for e in request.entities]
        columns = await self._engine.get_columns(sels, entities)
        return encode_batch_reply(
            _new_uuid(request.uuid), [s.text for s in sels], entities, columns
        )

    # -- writes ----------------------------------------------------------------------------
    # Each RPC is one engine write; Set/Update carry a Value and a selector, Append/Incr a
    # Scalar and an fqn (upstream's field names). Every reply is (uuid, timestamp).

    async def Set(self, request: api_pb2.SetRequest, context: Any) -> api_pb2.SetResponse:
        return await self._call("Set", context, self._write(request, self._engine.set))

    async def Append(self, request: api_pb2.AppendRequest, context: Any) -> api_pb2.AppendResponse:
        return await self._call("Append", context, self._write(request, self._engine.append))

    async def Incr(self, request: api_pb2.IncrRequest, context: Any) -> api_pb2.IncrResponse:
        return await self._call("Incr", context, self._write(request, self._engine.incr))

    async def Update(self, request: api_pb2.UpdateRequest, context: Any) -> api_pb2.UpdateResponse:
        return await self._call("Update", context, self._write(request, self._engine.update))

    async def _write(self, request: Any, write: Callable[..., Awaitable[WriteResult]]) -> Any:
        if isinstance(request, api_pb2.SetRequest | api_pb2.UpdateRequest):
            value, ts = _value_and_time(request)
            selector = request.selector
        else:
            value, ts = _scalar_and_time(request)
            selector = request.fqn
        res = await write(selector, dict(request.keys), value, ts)
        reply = _WRITE_REPLIES[type(request)]
        return reply(uuid=_new_uuid(request.uuid), timestamp=timestamp_to_proto(res.timestamp))


_WRITE_REPLIES: dict[type, Any] = {
    api_pb2.SetRequest: api_pb2.SetResponse,
    api_pb2.AppendRequest: api_pb2.AppendResponse,
    api_pb2.IncrRequest: api_pb2.IncrResponse,
    api_pb2.UpdateRequest: api_pb2.UpdateResponse,
}


async def _abort(rpc: str, context: Any, exc: Exception) -> None:
    """End the call with the status of the one error table (``context.abort`` raises)."""
    name = grpc_status_for(exc)
    if name == "INTERNAL":
        log.error("gRPC %s: internal error", rpc, exc_info=exc)
        message = "internal error (logged by the server)"
    else:
        message = str(exc) or type(exc).__name__
    code = getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)
    await context.abort(code, message)


def _value_and_time(request: api_pb2.SetRequest | api_pb2.UpdateRequest) -> tuple[Any, Any]:
    if not request.HasField("value"):
        raise InvalidArgument("value is required: set value.scalar_value or value.list_value")
    value = value_from_proto(request.value)
    ts = timestamp_from_proto(request.timestamp) if request.HasField("timestamp") else None
    return value, ts


def _scalar_and_time(request: api_pb2.AppendRequest | api_pb2.IncrRequest) -> tuple[Any, Any]:
    if not request.HasField("value"):
        raise InvalidArgument("value is required: set one of the Scalar fields")
    value = scalar_from_proto(request.value)
    ts = timestamp_from_proto(request.timestamp) if request.HasField("timestamp") else None
    return value, ts


class HealthServicer:
    """``grpc.health.v1.Health``: ``SERVING`` while the state store answers a ping.

    The overall health (service ``""``) and :data:`SERVICE_NAME` are known; other names are
    ``NOT_FOUND`` (``Check``) or ``SERVICE_UNKNOWN`` (``Watch``), as the health protocol says;
    ``List`` reports both.
    ``Watch`` re-checks every ``interval`` seconds and sends changes until the client leaves.
    """

    def __init__(self, engine: Engine, *, timeout: float = 2.0, interval: float = 5.0) -> None:
        self._engine = engine
        self._timeout = timeout
        self._interval = interval
        self._services = frozenset({"", SERVICE_NAME})

    async def status(self) -> int:
        """``SERVING`` or ``NOT_SERVING`` (never raises)."""
        try:
            await asyncio.wait_for(self._engine.state.ping(), self._timeout)
        except (StateUnavailable, TimeoutError, OSError) as exc:
            log.warning("health: state store unavailable: %s", exc)
            return int(health_pb2.HealthCheckResponse.NOT_SERVING)
        except Exception as exc:  # a health check must answer, not crash
            log.error("health: state ping failed", exc_info=exc)
            return int(health_pb2.HealthCheckResponse.NOT_SERVING)
        return int(health_pb2.HealthCheckResponse.SERVING)

    async def Check(self, request: Any, context: Any) -> Any:
        if request.service not in self._services:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=await self.status())

    async def List(self, request: Any, context: Any) -> Any:
        st = health_pb2.HealthCheckResponse(status=await self.status())
        return health_pb2.HealthListResponse(statuses={name: st for name in self._services})

    async def Watch(self, request: Any, context: Any) -> None:
        last: int | None = None
        while True:
            if request.service in self._services:
                st = await self.status()
            else:
                st = int(health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            if st != last:
                await context.write(health_pb2.HealthCheckResponse(status=st))
                last = st
            await asyncio.sleep(self._interval)


_PRE_ENCODED = frozenset({"Get", "BatchGet"})
"""The RPCs whose handlers return their reply already serialized."""


def _engine_service_handlers(servicer: EngineServicer) -> dict[str, grpc.RpcMethodHandler]:
    """``EngineService``'s method handlers, as the generated registration builds them, except
    that ``Get`` and ``BatchGet`` answer bytes they encoded themselves
    (:mod:`raptor.server.grpc_wire`), so their handlers have no response serializer."""
    handlers = {}
    for method in api_pb2.DESCRIPTOR.services_by_name["EngineService"].methods:
        request_cls = getattr(api_pb2, method.input_type.name)
        response_cls = getattr(api_pb2, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=request_cls.FromString,
            response_serializer=None
            if method.name in _PRE_ENCODED
            else response_cls.SerializeToString,
        )
    return handlers


def create_grpc_server(
    engine: Engine,
    address: str,
    *,
    statuses: StatusSource | None = None,
    options: tuple[tuple[str, Any], ...] = (),
) -> grpc.aio.Server:
    """A ``grpc.aio`` server on ``address`` (``host:port``) serving the engine; not started.

    Call it inside the event loop that will run it, then ``await server.start()`` and, on
    shutdown, ``await server.stop(grace)``. ``statuses`` feeds the asset status of
    ``FeatureDescriptor`` (default: the engine's catalog). ``options`` are extra gRPC channel
    arguments. Raises ``OSError`` when the address cannot be bound.
    """
    server = grpc.aio.server(options=list(options))
    handlers = _engine_service_handlers(EngineServicer(engine, statuses))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    # Registered methods are matched by the C core (no Python lookup per call), as the
    # generated registration does.
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(engine), server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"gRPC: cannot listen on {address}: {exc}") from None
    if port == 0:
        raise OSError(f"gRPC: cannot listen on {address}")
    return server
