"""The ``rest`` builder against a real local HTTP server (stdlib ``ThreadingHTTPServer``):
templating, caching by freshness, retries within the timeout, slow / failing / non-JSON
answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from raptor.api.loading import load_text
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine
from raptor.errors import FeatureTimeout, ProgramRuntimeError
from raptor.runners.config import Secrets
from raptor.runners.rest_builder import RestComputer, RestSourceError
from raptor.state.memory import MemoryStateStore

pytestmark = pytest.mark.integration


class Upstream(BaseHTTPRequestHandler):
    calls: ClassVar[dict[str, int]] = {}
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with self.lock:
            n = self.calls[self.path] = self.calls.get(self.path, 0) + 1
        kind, _, ident = self.path.strip("/").partition("/")
        if kind == "users":
            doc = {"id": ident, "address": {"city": f"city-{ident}"}}
            self._send(200, json.dumps(doc).encode())
        elif kind == "flaky":
            if n <= 2:
                self._send(503, b"busy")
            else:
                self._send(200, json.dumps({"address": {"city": "late"}}).encode())
        elif kind == "slow":
            time.sleep(0.6)
            self._send(200, json.dumps({"address": {"city": "slow"}}).encode())
        elif kind == "text":
            self._send(200, b"<html>hello</html>", "text/html")
        elif kind == "array":
            self._send(200, b"[1, 2]")
        else:
            self._send(404, b'{"error": "no such thing"}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        doc = {"address": {"city": f"{body['who']}|{self.headers.get('Authorization')}"}}
        self._send(200, json.dumps(doc).encode())


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def manifests(base: str) -> str:
    docs = []
    sources = {
        "users": [("url", f"{base}/users/{{key:user_id}}")],
        "flaky": [("url", f"{base}/flaky/{{keys}}")],
        "slow": [("url", f"{base}/slow/{{keys}}")],
        "text": [("url", f"{base}/text/{{keys}}")],
        "array": [("url", f"{base}/array/{{keys}}")],
        "missing": [("url", f"{base}/missing/{{keys}}")],
        "poster": [
            ("url", f"{base}/post"),
            ("method", "POST"),
            ("body", '{"who": "{key:user_id}"}'),
        ],
    }
    for name, config in sources.items():
        entries = "".join(f"    - name: {k}\n      value: {json.dumps(v)}\n" for k, v in config)
        if name == "poster":
            entries += (
                "    - name: header.Authorization\n"
                "      secretKeyRef: {name: upstream, key: token}\n"
            )
        docs.append(
            f"""apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {{name: {name}, namespace: default}}
spec:
  kind: rest
  config:
{entries}  keyFields: [user_id]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {{name: {name}-city, namespace: default}}
spec:
  primitive: string
  freshness: 1h
  staleness: 2h
  timeout: {"300ms" if name == "slow" else "2s"}
  keys: [user_id]
  dataSource: {{name: {name}}}
  builder:
    code: |
      def handler(row, ctx) -> str:
          assert row["address.city"] == row["address"]["city"]
          return row["address"]["city"]
"""
        )
    return "---\n".join(docs)


@pytest.fixture
async def engine(upstream: str) -> AsyncIterator[Engine]:
    loaded = load_text(manifests(upstream))
    assert not loaded.errors, loaded.errors
    catalog = build_catalog(loaded.assets)
    assert not catalog.errors, catalog.errors
    rest = RestComputer(
        Secrets(env={"RAPTOR_SECRET_UPSTREAM_TOKEN": "Bearer s3cret"}, secrets_dir=None)
    )
    e = Engine(MemoryStateStore(), catalog=catalog, computers={"rest": rest})
    try:
        yield e
    finally:
        await e.aclose()
        await rest.aclose()


async def test_the_json_answer_is_the_row_and_values_are_cached_by_freshness(
    engine: Engine,
) -> None:
    first = await engine.get("users-city", {"user_id": "42"})
    assert (first.value, first.fresh) == ("city-42", True)
    again = await engine.get("users-city", {"user_id": "42"})
    assert again.value == "city-42"
    assert Upstream.calls["/users/42"] == 1  # served from state until stale


async def test_failures_are_retried_within_the_timeout(engine: Engine) -> None:
    value = await engine.get("flaky-city", {"user_id": "7"})
    assert value.value == "late"
    assert Upstream.calls["/flaky/7"] == 3


async def test_a_slow_source_past_the_timeout_is_a_timeout_error(engine: Engine) -> None:
    started = time.monotonic()
    with pytest.raises(FeatureTimeout):
        await engine.get("slow-city", {"user_id": "1"})
    assert time.monotonic() - started < 0.55


@pytest.mark.parametrize(
    ("feature", "problem"),
    [
        ("text-city", "not JSON (content-type text/html)"),
        ("array-city", "expected a JSON object, got a JSON list"),
        ("missing-city", "HTTP 404"),
    ],
)
async def test_bad_answers_are_clear_per_request_errors(
    engine: Engine, feature: str, problem: str
) -> None:
    with pytest.raises(RestSourceError) as err:
        await engine.get(feature, {"user_id": "9"})
    assert problem in str(err.value)
    assert f"default.{feature.removesuffix('-city')}" in str(err.value)
    assert isinstance(err.value, ProgramRuntimeError)  # 502 at the accessor
    if feature == "missing-city":
        assert Upstream.calls["/missing/9"] == 1  # a 404 is not retried


async def test_body_templates_and_secret_headers(engine: Engine) -> None:
    value = await engine.get("poster-city", {"user_id": "ann"})
    assert value.value == "ann|Bearer s3cret"
