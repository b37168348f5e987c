"""The ``rest`` builder: at request time, call the DataSource's HTTP endpoint and run the
feature's program on the JSON answer (SPEC 4.5). The only module that imports ``httpx``.

Register it once: ``engine.computers["rest"] = RestComputer(secrets)``; the engine calls
:meth:`RestComputer.compute` only when no fresh value is stored, stores the result, and serves
it until it is stale — so values are **cached by the feature's freshness**, and concurrent
readers of one (feature, entity) share one call.

DataSource config (``kind: rest``):

* ``url`` — may contain ``{key:<name>}`` (the value of key ``<name>``) and ``{keys}`` (the key
  values in the feature's key order, joined by ``,``). In the URL the values are
  percent-encoded; in ``headers`` and ``body`` they are inserted as they are.
* ``method`` (default ``GET``), ``body`` (a template; sent as JSON when it parses as JSON after
  templating, else as text), ``headers`` (a JSON object, or ``Name: value`` lines) and
  ``header.<Name>`` entries (handy with ``secretKeyRef`` for tokens).
* ``timeout`` — the budget when the feature has no ``timeout`` (default ``10s``).

Retries: connection errors, timeouts, ``408``, ``429`` and ``5xx`` are retried with exponential
backoff (50 ms doubling, jittered) until the **feature's timeout** is spent — each attempt gets
the time that remains, and no retry starts after the deadline. Other ``4xx``, a non-JSON body
or JSON that is not an object fail at once. Every failure is a :class:`RestSourceError` naming
the DataSource, the URL (without its query string) and what went wrong; the engine turns it
into a stale value when it has one, else the error (``502``) — never a crash.

The answer (a JSON object) is the program's ``row`` (flattened like any row); ``ctx.timestamp``
is the request time; literal ``ctx.get_feature`` dependencies are fetched before the program
runs, as for sourceless features.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import msgspec

from raptor.api.assets import DataSourceDef
from raptor.engine.catalog import FeatureRuntime
from raptor.engine.engine import Engine
from raptor.engine.ingest import flatten_row
from raptor.engine.programs import ProgramResult
from raptor.engine.sourceless import request_context
from raptor.errors import NotReady, ProgramRuntimeError
from raptor.runners.config import Secrets, config_duration, resolve_config

__all__ = ["RestComputer", "RestSourceError", "render_template"]

_PLACEHOLDER = re.compile(r"\{key:([A-Za-z0-9_.\-]+)\}|\{keys\}")
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RestSourceError(ProgramRuntimeError):
    """The REST source of a feature failed for this request (502 at the accessor)."""


def render_template(
    template: str, keys: Mapping[str, str], order: tuple[str, ...], *, in_url: bool
) -> str:
    """Replace ``{key:<name>}`` and ``{keys}`` in ``template``. Pure.

    >>> render_template("/u/{key:id}?q={keys}", {"id": "a b"}, ("id",), in_url=True)
    '/u/a%20b?q=a%20b'
    """

    def value(v: str) -> str:
        return quote(v, safe="") if in_url else v

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            return ",".join(value(str(keys[k])) for k in order if k in keys)
        if name not in keys:
            raise RestSourceError(f"template placeholder {m.group(0)} names no key of the feature")
        return value(str(keys[name]))

    return _PLACEHOLDER.sub(sub, template)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _headers(options: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    text = options.get("headers", "").strip()
    if text:
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise NotReady(
                    f"rest source: config 'headers' is not a JSON object: {exc}"
                ) from None
            if not isinstance(parsed, dict):
                raise NotReady("rest source: config 'headers' must be a JSON object")
            out.update({str(k): str(v) for k, v in parsed.items()})
        else:
            for line in text.splitlines():
                name, sep, value = line.partition(":")
                if sep and name.strip():
                    out[name.strip()] = value.strip()
    for k, v in options.items():
        if k.startswith("header."):
            out[k.removeprefix("header.")] = v
    return out


class _Endpoint:
    __slots__ = ("body", "budget", "headers", "method", "url")

    def __init__(self, options: Mapping[str, str], source: DataSourceDef) -> None:
        url = options.get("url", "").strip()
        if not url:
            raise NotReady(f"DataSource {source.fqn}: config 'url' is required for a rest source")
        self.url = url
        self.method = (options.get("method", "") or "GET").strip().upper() or "GET"
        body = options.get("body", "")
        self.body = body if body.strip() else None
        self.headers = _headers(options)
        self.budget = config_duration(options, "timeout", 10.0)


class RestComputer:
    """The request-time half of the ``rest`` builder (see the module docstring)."""

    def __init__(
        self,
        secrets: Secrets | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        initial_backoff: float = 0.05,
    ) -> None:
        self.secrets = secrets or Secrets()
        self._client = client
        self._own_client = client is None
        self._endpoints: dict[int, tuple[DataSourceDef, _Endpoint]] = {}
        self.initial_backoff = initial_backoff

    def _endpoint(self, source: DataSourceDef) -> _Endpoint:
        hit = self._endpoints.get(id(source))
        if hit is not None and hit[0] is source:
            return hit[1]
        endpoint = _Endpoint(resolve_config(source, self.secrets), source)
        if len(self._endpoints) > 1000:
            self._endpoints.clear()
        self._endpoints[id(source)] = (source, endpoint)
        return endpoint

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=True)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._own_client:
            await client.aclose()

    async def compute(
        self, engine: Engine, feature: FeatureRuntime, keys: Mapping[str, str], now: int
    ) -> ProgramResult | None:
        program = feature.program
        ds_fqn = feature.defn.data_source
        source = engine.catalog.data_sources.get(ds_fqn) if ds_fqn else None
        if source is None:
            raise NotReady(f"feature {feature.fqn}: its rest DataSource {ds_fqn} is not deployed")
        endpoint = self._endpoint(source)
        loop = asyncio.get_running_loop()
        budget = feature.defn.timeout / 1_000_000 if feature.defn.timeout else endpoint.budget
        deadline = loop.time() + budget
        row = await self._call(source, endpoint, feature, keys, deadline)
        if program is None:
            return None
        ctx = await request_context(engine, feature, keys, now)
        return await engine.executor.run(program, row, ctx, engine.settings.program_hard_limit)

    async def _call(
        self,
        source: DataSourceDef,
        endpoint: _Endpoint,
        feature: FeatureRuntime,
        keys: Mapping[str, str],
        deadline: float,
    ) -> dict[str, Any]:
        order = feature.defn.keys
        url = render_template(endpoint.url, keys, order, in_url=True)
        shown = _redact(url)
        headers = {
            k: render_template(v, keys, order, in_url=False) for k, v in endpoint.headers.items()
        }
        content: bytes | None = None
        if endpoint.body is not None:
            text = render_template(endpoint.body, keys, order, in_url=False)
            content = text.encode()
            try:
                json.loads(text)
                headers.setdefault("Content-Type", "application/json")
            except ValueError:
                headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        headers.setdefault("Accept", "application/json")
        where = f"rest source {source.fqn} ({endpoint.method} {shown})"
        loop = asyncio.get_running_loop()
        delay = self.initial_backoff
        attempt = 0
        last = "no attempt was made"
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RestSourceError(
                    f"{where}: gave up after {attempt} attempt(s) within the feature's timeout: "
                    f"{last}"
                )
            attempt += 1
            try:
                resp = await self._http().request(
                    endpoint.method, url, headers=headers, content=content, timeout=remaining
                )
            except httpx.TimeoutException:
                last = "timed out"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 300:
                    return self._row(where, resp)
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code not in _RETRY_STATUS:
                    raise RestSourceError(f"{where}: {last}")
            pause = min(delay * (0.5 + random.random()), max(0.0, deadline - loop.time()))
            delay *= 2
            if pause > 0:
                await asyncio.sleep(pause)

    @staticmethod
    def _row(where: str, resp: httpx.Response) -> dict[str, Any]:
        try:
            data = msgspec.json.decode(resp.content)
        except msgspec.DecodeError:
            ctype = resp.headers.get("content-type", "?")
            raise RestSourceError(
                f"{where}: the answer is not JSON (content-type {ctype}): {resp.text[:100]!r}"
            ) from None
        if not isinstance(data, dict):
            raise RestSourceError(
                f"{where}: expected a JSON object, got a JSON {type(data).__name__}"
            )
        return flatten_row(data)
