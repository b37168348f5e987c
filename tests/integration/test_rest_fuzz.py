"""Property-based fuzzing of the REST accessor from its own ``/openapi.json`` (schemathesis).

A real server — ``raptor up``'s default, granian embedded in an event loop (background thread,
loopback), through :mod:`raptor.server.http_server` — serves an engine with a few features whose
names match the document's examples, so generated requests reach both the success paths and
the error paths. Every operation gets valid and invalid (negative) requests; the checks are
that no response is a 5xx, that every status code is one the document declares, and that
responses match the declared content types and schemas — so the document stays accurate.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from raptor.api.loading import load_text
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine
from raptor.server.http_server import create_http_server
from raptor.server.openapi import openapi_document
from raptor.server.rest import create_app
from raptor.state.memory import MemoryStateStore

pytestmark = pytest.mark.integration

MANIFESTS = """
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {name: clicks-src}
spec: {kind: push, keyFields: [user], timestampField: ts}
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: spend}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  keys: [user]
  dataSource: {name: clicks-src}
  builder:
    aggr: [sum, count]
    code: |
      def handler(row, ctx) -> float:
          return row["amount"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: clicks}
spec:
  primitive: "[]string"
  freshness: 1m
  staleness: 1h
  keys: []
  dataSource: {name: clicks-src}
  builder:
    code: |
      def handler(row, ctx) -> list[str]:
          return None
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: price}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  keys: []
  keepPrevious: {versions: 1, over: 1h}
  builder:
    code: |
      def handler(row, ctx) -> float:
          return 1.5
"""


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    loaded = load_text(MANIFESTS)
    assert not loaded.errors, loaded.errors
    engine = Engine(MemoryStateStore(), catalog=build_catalog(loaded.assets))
    app = create_app(engine, max_body=32 * 1024)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    failed: list[BaseException] = []

    async def serve() -> None:
        server = create_http_server(app, "127.0.0.1", port, "granian")
        try:
            await server.start()
        except BaseException as exc:
            failed.append(exc)
            raise
        finally:
            started.set()
        await stop.wait()
        await server.stop()
        await engine.aclose()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(30), "the server did not start"
    assert not failed, failed
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """NDJSON bodies are documented as text; negative cases may generate other JSON values."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


# The document the app serves (its pure source; test_rest_api checks the app serves it).
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_request_the_document_allows_or_forbids_makes_the_server_fail(
    case: Any, base_url: str
) -> None:
    case.call_and_validate(
        base_url=base_url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
