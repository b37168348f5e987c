"""The REST accessor (SPEC 5): an ASGI app over an :class:`~raptor.engine.engine.Engine`.

Translation only: every route parses the request, calls the engine, and encodes the answer;
errors become JSON ``{"error": {"code", "message"}}`` through the one table of
:mod:`raptor.server.errors`. Routes (shapes in :mod:`raptor.server.openapi`)::

    GET  /api/v1alpha1/features/{selector}?keys.K=V   (also K=V)      Get
    POST /api/v1alpha1/features:batchGet                               batch Get
    PUT  /api/v1alpha1/features/{selector}                             Set
    POST /api/v1alpha1/features/{selector}:append | :incr | :update    Append / Incr / Update
    GET  /api/v1alpha1/descriptors, /api/v1alpha1/descriptors/{selector}
    POST /api/v1alpha1/datasources/{namespace}/{name}/rows             push rows
    POST /get-online-features                                          Feast-compatible read
    GET  /healthz, /readyz, /metrics, /openapi.json

Design: each route is a coroutine ``(request) -> Reply`` with ``Reply = (status, body,
headers)``, framework-free, wrapped once by :meth:`_Api.route` (error translation, latency
metric). Starlette does the routing, including JSON 404/405 answers. The two hot routes, Get and
batchGet, are also dispatched by :class:`RestApp` straight from the ASGI scope, skipping
Starlette's middleware stack, router and Request/Response objects; they run the very same route
coroutines. Measured in-process on the benchmark machine, one Get costs 12 µs through the raw
dispatcher (5.5 µs of it in the engine) against 28 µs through Starlette: about a fifth of the
server's whole CPU time per request (``bench/bench_rest.py`` measures end to end).

Metrics are recorded inside the route wrapper (no middleware): one pre-bound timer per route and
method, one counter list per feature (:mod:`raptor.server.metrics`).

batchGet encodes the engine's columns (:meth:`Engine.get_columns`): no ``FeatureValue`` or
datetime per cell, each distinct timestamp formatted once (:func:`wire.format_stamps`), the
read counters bumped once per column, the selectors of a request parsed once per distinct list,
and the response containers reused between requests (:class:`~raptor.server.batch.BatchEncoder`).
The body is byte for byte what the per-cell encoding wrote (``tests/unit/test_engine_batch.py``).
100 random entities of 10,000 x 5 features cost about 0.6 ms in-process on the benchmark
machine (1.1 ms before the memory store kept one dict per feature and memoized windows), most
of it cache misses on the stored values and building the response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from time import perf_counter
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from raptor.api.names import Selector, fqn_of, parse_selector
from raptor.engine.catalog import AssetStatus, check_dependency
from raptor.engine.engine import BatchColumn, Engine
from raptor.engine.ingest import InvalidRows, ingest_rows
from raptor.engine.pipeline import FeatureValue
from raptor.errors import InvalidArgument, NotFound, ProgramRuntimeError, RaptorError
from raptor.server import descriptors as desc
from raptor.server import feast
from raptor.server.batch import BatchEncoder
from raptor.server.errors import (
    DataSourceKindError,
    MethodNotAllowed,
    error_document,
)
from raptor.server.metrics import (
    CONTENT_TYPE,
    ERROR,
    HIT,
    MISS,
    PROGRAM_ERROR,
    STALE,
    FeatureCounts,
    Metrics,
)
from raptor.server.openapi import openapi_document
from raptor.server.push import parse_rows
from raptor.server.wire import (
    content_type_of,
    dumps,
    entity_keys,
    entity_keys_list,
    loads,
    query_keys,
    read_body,
    require_json_type,
)

__all__ = ["RestApp", "create_app"]

PREFIX = "/api/v1alpha1"
FEATURES = PREFIX + "/features/"
BATCH_GET = PREFIX + "/features:batchGet"
_WRITE_OPS = ("append", "incr", "update")

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, bytes, Headers]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Scope, Receive], Awaitable[Reply]]

_JSON = (b"content-type", b"application/json")


class _Api:
    """The routes, as framework-free coroutines over the engine."""

    def __init__(
        self,
        engine: Engine,
        statuses: Callable[[], Mapping[str, AssetStatus]],
        max_body: int,
        metrics: Metrics | None,
    ) -> None:
        self.engine = engine
        self.statuses = statuses
        self.max_body = max_body
        self.metrics = metrics
        self.extra_metrics: Sequence[Callable[[], bytes]] = ()
        self.openapi = dumps(openapi_document())
        # batchGet: the selectors of a request (as sent) → parsed, deduplicated, and named.
        self.batch_selectors: dict[tuple[str, ...], tuple[list[Selector], list[str]]] = {}
        self.batch_encoder = BatchEncoder()

    # -- plumbing ------------------------------------------------------------------------

    def route(self, template: str, handler: Handler) -> Handler:
        """Wrap ``handler``: errors become JSON replies, latency is recorded per method."""
        metrics = self.metrics

        async def run(scope: Scope, receive: Receive) -> Reply:
            start = perf_counter()
            try:
                reply = await handler(scope, receive)
            except Exception as exc:  # every failure is answered, none escapes
                reply = self.error_reply(exc)
            if metrics is not None:
                metrics.route(template, scope["method"]).observe(perf_counter() - start, reply[0])
            return reply

        return run

    @staticmethod
    def error_reply(exc: BaseException) -> Reply:
        st, doc = error_document(exc)
        headers: Headers = [_JSON]
        if st.retry_after is not None:
            headers.append((b"retry-after", str(st.retry_after).encode()))
        if isinstance(exc, MethodNotAllowed) and exc.allowed:
            headers.append((b"allow", ", ".join(exc.allowed).encode()))
        return st.http, dumps(doc), headers

    async def json_body(self, scope: Scope, receive: Receive) -> Any:
        headers = scope["headers"]
        require_json_type(content_type_of(headers))
        return loads(await read_body(receive, headers, self.max_body))

    def count(self, fv: FeatureValue) -> None:
        if self.metrics is not None:
            c = self.metrics.feature(fv.fqn)
            c[MISS if fv.value is None else HIT if fv.fresh else STALE] += 1

    def count_error(self, selector: Any, exc: BaseException) -> None:
        """Count a failed read against a *deployed* feature (never an unknown name)."""
        if self.metrics is None or not isinstance(selector, str):
            return
        try:
            fqn = parse_selector(selector).fqn
        except RaptorError:
            return
        if fqn in self.engine.catalog.features or fqn in self.engine.catalog.models:
            c = self.metrics.feature(fqn)
            c[ERROR] += 1
            if isinstance(exc, ProgramRuntimeError):
                c[PROGRAM_ERROR] += 1

    # -- features --------------------------------------------------------------------------

    async def get_feature(self, scope: Scope, receive: Receive) -> Reply:
        selector = scope["path"][len(FEATURES) :]
        try:
            fv = await self.engine.get(selector, query_keys(scope["query_string"]))
        except RaptorError as exc:
            self.count_error(selector, exc)
            raise
        self.count(fv)
        return (
            200,
            dumps(
                {
                    "fqn": fv.fqn,
                    "selector": fv.selector,
                    "keys": fv.keys,
                    "value": fv.value,
                    "timestamp": fv.timestamp,
                    "fresh": fv.fresh,
                }
            ),
            [_JSON],
        )

    async def batch_get(self, scope: Scope, receive: Receive) -> Reply:
        body = await self.json_body(scope, receive)
        if not isinstance(body, dict):
            raise InvalidArgument("request body must be a JSON object")
        raw = body.get("selectors")
        if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
            raise InvalidArgument("'selectors' must be an array of selector strings")
        ents = body.get("entities")
        if not isinstance(ents, list):
            raise InvalidArgument("'entities' must be an array of key objects")
        entities = entity_keys_list(ents, "entities")
        key = tuple(raw)
        parsed = self.batch_selectors.get(key)
        if parsed is None:
            sels = list(dict.fromkeys(parse_selector(s) for s in raw))
            parsed = (sels, [str(s) for s in sels])
            if len(self.batch_selectors) >= 1024:  # bounded: a memo, never a leak
                self.batch_selectors.clear()
            self.batch_selectors[key] = parsed
        sels, names = parsed
        columns = await self.engine.get_columns(sels, entities)
        if self.metrics is not None:
            for col in columns:
                _count_column(self.metrics.feature(col.fqn), col)
        return 200, self.batch_encoder.encode(names, entities, columns), [_JSON]

    async def feature_op(self, scope: Scope, receive: Receive) -> Reply:
        """``/features/{selector}`` with any method: Get, Set or a ``:op`` write."""
        raw = scope["path"][len(FEATURES) :]
        selector, sep, op = raw.rpartition(":")
        if not sep:
            selector, op = raw, ""
        method = scope["method"]
        if op and op not in _WRITE_OPS:
            raise NotFound(f"unknown operation ':{op}'; use one of :append, :incr, :update")
        if not op and method in ("GET", "HEAD"):
            return await self.get_feature(scope, receive)
        if (op and method != "POST") or (not op and method != "PUT"):
            allowed = ("POST",) if op else ("GET", "HEAD", "PUT")
            raise MethodNotAllowed(f"{method} is not allowed here", allowed)
        body = await self.json_body(scope, receive)
        if not isinstance(body, dict):
            raise InvalidArgument("request body must be a JSON object")
        if "value" not in body:
            raise InvalidArgument("request body needs a 'value'")
        keys = entity_keys(body.get("keys"), "keys")
        write = {
            "": self.engine.set,
            "append": self.engine.append,
            "incr": self.engine.incr,
            "update": self.engine.update,
        }[op]
        res = await write(selector, keys, body["value"], body.get("timestamp"))
        return (
            200,
            dumps(
                {
                    "fqn": res.fqn,
                    "keys": res.keys,
                    "value": res.value,
                    "timestamp": res.timestamp,
                    "applied": res.applied,
                }
            ),
            [_JSON],
        )

    async def feast_get(self, scope: Scope, receive: Receive) -> Reply:
        req = feast.parse_request(await self.json_body(scope, receive))
        rows = await self.engine.get_many(req.selectors, req.entities)
        for row in rows:
            for cell in row:
                if isinstance(cell, FeatureValue):
                    self.count(cell)
        return 200, dumps(feast.build_response(req, rows)), [_JSON]

    # -- descriptors, push -------------------------------------------------------------------

    async def descriptors(self, scope: Scope, receive: Receive) -> Reply:
        doc = desc.describe_all(self.engine.catalog, self.statuses())
        return 200, dumps({"descriptors": doc}), [_JSON]

    async def descriptor(self, scope: Scope, receive: Receive) -> Reply:
        sel = parse_selector(scope["path_params"]["selector"])
        catalog = self.engine.catalog
        rt = catalog.features.get(sel.fqn) or catalog.models.get(sel.fqn)
        statuses = self.statuses()
        if rt is not None:
            problem = check_dependency(sel, rt.defn)
            if problem:
                raise InvalidArgument(problem)
            return 200, dumps({"selector": str(sel), **desc.describe(rt, statuses)}), [_JSON]
        for kind in ("Feature", "Model"):
            status = statuses.get(f"{kind}/{sel.fqn}")
            if status is not None:
                doc = {"selector": str(sel), **desc.describe_status(status)}
                return 200, dumps(doc), [_JSON]
        raise NotFound(f"feature {sel.fqn} not found")

    async def push_rows(self, scope: Scope, receive: Receive) -> Reply:
        params = scope["path_params"]
        fqn = fqn_of(params["namespace"], params["name"])
        src = self.engine.catalog.data_sources.get(fqn)
        if src is None:
            raise NotFound(f"data source {fqn} not found")
        if src.kind.lower() != "push":
            raise DataSourceKindError(
                f"data source {fqn} is of kind {src.kind!r}; rows can only be pushed to a "
                "DataSource of kind 'push'"
            )
        headers = scope["headers"]
        body = await read_body(receive, headers, self.max_body)
        rows = parse_rows(body, content_type_of(headers), fqn)
        try:
            report = await ingest_rows(self.engine, fqn, rows)
        except InvalidRows:
            if self.metrics is not None:
                self.metrics.push(fqn, 0, len(rows))
            raise
        if self.metrics is not None:
            self.metrics.push(fqn, report.rows, 0)
        doc = {"rows": report.rows, "updates": report.updates, "applied": report.applied}
        return 200, dumps(doc), [_JSON]

    # -- operations ------------------------------------------------------------------------

    async def healthz(self, scope: Scope, receive: Receive) -> Reply:
        return 200, b'{"status":"ok"}', [_JSON]

    async def readyz(self, scope: Scope, receive: Receive) -> Reply:
        try:
            await asyncio.wait_for(self.engine.state.ping(), timeout=2.0)
        except TimeoutError:
            doc = {"error": {"code": "UNAVAILABLE", "message": "state store: no answer in 2s"}}
            return 503, dumps(doc), [_JSON, (b"retry-after", b"1")]
        return 200, b'{"status":"ready"}', [_JSON]

    async def metrics_text(self, scope: Scope, receive: Receive) -> Reply:
        assert self.metrics is not None
        body = self.metrics.render() + b"".join(extra() for extra in self.extra_metrics)
        return 200, body, [(b"content-type", CONTENT_TYPE.encode())]

    async def openapi_json(self, scope: Scope, receive: Receive) -> Reply:
        return 200, self.openapi, [_JSON]


def _count_column(c: FeatureCounts, col: BatchColumn) -> None:
    """Count a batch column's reads (hit, stale, miss, error) in one pass over the column."""
    values, fresh, errors = col.values, col.fresh, col.errors
    if errors:
        for r, (v, f) in enumerate(zip(values, fresh, strict=True)):
            exc = errors.get(r)
            if exc is not None:
                c[ERROR] += 1
                if isinstance(exc, ProgramRuntimeError):
                    c[PROGRAM_ERROR] += 1
            else:
                c[MISS if v is None else HIT if f else STALE] += 1
        return
    misses = values.count(None)
    hits = (
        fresh.count(True)
        if not misses
        else sum(1 for v, f in zip(values, fresh, strict=True) if f and v is not None)
    )
    c[MISS] += misses
    c[HIT] += hits
    c[STALE] += len(values) - misses - hits


def _starlette_endpoint(
    run: Callable[[Scope, Receive], Awaitable[Reply]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        status, body, headers = await run(request.scope, request.receive)
        response = Response(body, status)
        response.raw_headers.extend(headers)
        return response

    return endpoint


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = tuple((exc.headers or {}).get("Allow", "").split(", "))
        err: Exception = MethodNotAllowed(f"{request.method} is not allowed here", allowed)
    elif exc.status_code == 404:
        err = NotFound(f"no route {request.method} {request.url.path}")
    else:
        err = InvalidArgument(str(exc.detail))
    status, body, headers = _Api.error_reply(err)
    response = Response(body, exc.status_code if status == 400 else status)
    response.raw_headers.extend(headers)
    return response


async def _send_reply(send: Send, reply: Reply) -> None:
    status, body, headers = reply
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RestApp:
    """The ASGI app: Get and batchGet dispatched directly, everything else by Starlette."""

    def __init__(self, api: _Api, router: Starlette) -> None:
        self.api = api
        self.router = router
        self._get = api.route(FEATURES + "{selector}", api.get_feature)
        self._batch = api.route(BATCH_GET, api.batch_get)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            method = scope["method"]
            if method == "GET" and path.startswith(FEATURES):
                tail = path[len(FEATURES) :]
                if "/" not in tail and ":" not in tail:  # a plain Get; ``:op`` goes to Starlette
                    await _send_reply(send, await self._get(scope, receive))
                    return
            if method == "POST" and path == BATCH_GET:
                await _send_reply(send, await self._batch(scope, receive))
                return
        await self.router(scope, receive, send)


def create_app(
    engine: Engine,
    *,
    statuses: Callable[[], Mapping[str, AssetStatus]] | None = None,
    max_body: int = 1_048_576,
    metrics: bool = True,
    extra_metrics: Sequence[Callable[[], bytes]] = (),
) -> RestApp:
    """The REST accessor of ``engine``.

    ``statuses`` returns every asset's status keyed ``Kind/fqn`` (the control plane's view, for
    the descriptors); it defaults to the engine catalog's. ``max_body`` bounds request bodies
    (413 past it). ``metrics`` adds ``/metrics`` and records request and feature counters;
    ``extra_metrics`` are appended to it (text exposition, e.g. the in-process runners').
    """
    api = _Api(
        engine,
        statuses or (lambda: engine.catalog.statuses),
        max_body,
        Metrics() if metrics else None,
    )
    api.extra_metrics = tuple(extra_metrics)

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, _starlette_endpoint(api.route(path, handler)), methods=methods)

    routes = [
        route(BATCH_GET, api.batch_get, ["POST"]),
        route(FEATURES + "{selector}", api.feature_op, ["GET", "PUT", "POST"]),
        route(PREFIX + "/descriptors", api.descriptors, ["GET"]),
        route(PREFIX + "/descriptors/{selector}", api.descriptor, ["GET"]),
        route(PREFIX + "/datasources/{namespace}/{name}/rows", api.push_rows, ["POST"]),
        route("/get-online-features", api.feast_get, ["POST"]),
        route("/healthz", api.healthz, ["GET"]),
        route("/readyz", api.readyz, ["GET"]),
        route("/openapi.json", api.openapi_json, ["GET"]),
    ]
    if api.metrics is not None:
        routes.append(route("/metrics", api.metrics_text, ["GET"]))
    router = Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
    return RestApp(api, router)
