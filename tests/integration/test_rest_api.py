"""The REST accessor over a real socket: uvicorn serving ``create_app`` in a background thread,
driven with httpx as a client would.

Every route, every error status (400/404/405/409/413/415/422/502/503/504) and, after each bad
request, proof that the server still serves. The engine runs on a :class:`FakeClock`, so
freshness is moved by the test, not by waiting. Tests use their own entity keys, so they share
one server without interfering.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from raptor.api.loading import load_text
from raptor.api.timeutil import format_timestamp
from raptor.engine.catalog import AssetStatus, FeatureRuntime, build_catalog
from raptor.engine.engine import Engine
from raptor.engine.programs import ProgramResult
from raptor.server.rest import create_app
from raptor.state.memory import MemoryStateStore
from raptor.testing import FakeClock

pytestmark = pytest.mark.integration

MANIFESTS = """
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {name: card-txns}
spec: {kind: push, keyFields: [card], timestampField: ts}
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {name: clickstream}
spec:
  kind: streaming
  config: [{name: kind, value: redis}, {name: url, value: "redis://localhost"}]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: spend}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  keys: [card]
  dataSource: {name: card-txns}
  builder:
    aggr: [sum, count, max]
    code: |
      def handler(row, ctx) -> float:
          return row["amount"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: last-merchant}
spec:
  primitive: string
  freshness: 1m
  staleness: 1h
  keys: [card]
  keepPrevious: {versions: 2, over: 1h}
  dataSource: {name: card-txns}
  builder:
    code: |
      def handler(row, ctx) -> str:
          return row["merchant"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: price}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  keys: [card]
  dataSource: {name: card-txns}
  builder:
    code: |
      def handler(row, ctx) -> float:
          return None
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: tags}
spec:
  primitive: "[]string"
  freshness: 1m
  staleness: 1h
  keys: [card]
  dataSource: {name: card-txns}
  builder:
    code: |
      def handler(row, ctx) -> list[str]:
          return None
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: visits}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [card]
  dataSource: {name: card-txns}
  builder:
    code: |
      def handler(row, ctx) -> int:
          return None
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: hour-of-day}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: []
  builder:
    code: |
      def handler(row, ctx) -> int:
          return ctx.timestamp.hour
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: broken}
spec:
  primitive: int
  freshness: 1m
  keys: [card]
  builder:
    code: |
      def handler(row, ctx) -> int:
          return int("not a number")
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: slow-score}
spec:
  primitive: float
  freshness: 1m
  timeout: 50ms
  keys: [card]
  builder:
    kind: rest
    code: |
      def handler(row, ctx) -> float:
          return row["score"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: invalid}
spec:
  primitive: int
  freshness: 1m
  keys: [card]
  builder:
    code: |
      def handler(row, ctx) -> str:
          return "annotation does not match the primitive"
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Model
metadata: {name: fraud}
spec:
  freshness: 1m
  features: [spend+sum, last-merchant]
  keys: [card]
  modelServer: builtin
"""


class SlowComputer:
    """The request-time half of the ``rest`` builder, standing in for a slow remote API (the
    real one is another module's): it never answers within the feature's 50 ms timeout."""

    async def compute(
        self, engine: Engine, feature: FeatureRuntime, keys: Mapping[str, str], now: int
    ) -> ProgramResult | None:
        await asyncio.sleep(5)
        return None


class LiveServer:
    """uvicorn serving ``app`` on a free loopback port, in a background thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", ws="none"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            self.thread.join(0.01)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class World:
    def __init__(self, engine: Engine, clock: FakeClock, client: httpx.Client) -> None:
        self.engine = engine
        self.clock = clock
        self.client = client

    def push(self, rows: list[dict[str, Any]]) -> httpx.Response:
        return self.client.post("/api/v1alpha1/datasources/default/card-txns/rows", json=rows)

    def get(self, selector: str, **keys: str) -> httpx.Response:
        return self.client.get(f"/api/v1alpha1/features/{selector}", params=keys)

    def assert_serving(self) -> None:
        """The server still answers, and a normal read still works."""
        assert self.client.get("/healthz").json() == {"status": "ok"}
        assert self.get("hour-of-day").status_code == 200


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    clock = FakeClock(datetime(2024, 6, 1, 12, 0, tzinfo=UTC))
    loaded = load_text(MANIFESTS)
    assert not loaded.errors, loaded.errors
    catalog = build_catalog(loaded.assets)
    engine = Engine(
        MemoryStateStore(), clock=clock, catalog=catalog, computers={"rest": SlowComputer()}
    )
    app = create_app(engine, max_body=64 * 1024)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=10) as client:
        yield World(engine, clock, client)
    asyncio.run(engine.aclose())


def ts(world: World, seconds: float = 0) -> str:
    return format_timestamp(world.clock.now() + timedelta(seconds=seconds))


# -- reads -------------------------------------------------------------------------------------


def test_get_returns_a_pushed_value_with_its_selector_keys_timestamp_and_freshness(
    world: World,
) -> None:
    assert world.push(
        [{"card": "g1", "amount": 10.0, "merchant": "shop", "ts": ts(world)}]
    ).is_success

    r = world.get("last-merchant", card="g1")

    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body == {
        "fqn": "default.last_merchant",
        "selector": "default.last_merchant",
        "keys": {"card": "g1"},
        "value": "shop",
        "timestamp": body["timestamp"],
        "fresh": True,
    }
    assert datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")) == world.clock.now()
    assert body["timestamp"].endswith("Z")


def test_keys_are_read_from_dotted_and_plain_query_parameters(world: World) -> None:
    world.push([{"card": "g2", "amount": 1.0, "merchant": "a", "ts": ts(world)}])

    dotted = world.client.get("/api/v1alpha1/features/last-merchant?keys.card=g2")
    plain = world.client.get("/api/v1alpha1/features/last-merchant?card=g2")
    both = world.client.get("/api/v1alpha1/features/last-merchant?card=nope&keys.card=g2")

    assert dotted.json()["value"] == plain.json()["value"] == both.json()["value"] == "a"


def test_a_known_feature_without_a_value_is_200_with_null(world: World) -> None:
    r = world.get("last-merchant", card="never-pushed")

    assert r.status_code == 200
    assert r.json()["value"] is None
    assert r.json()["timestamp"] is None
    assert r.json()["fresh"] is False


def test_windowed_reads_give_each_function_and_the_query_time(world: World) -> None:
    world.push(
        [
            {"card": "g3", "amount": 5.0, "merchant": "a", "ts": ts(world, -30)},
            {"card": "g3", "amount": 7.0, "merchant": "b", "ts": ts(world, -10)},
        ]
    )

    got = {fn: world.get(f"spend+{fn}", card="g3").json() for fn in ("sum", "count", "max")}

    assert got["sum"]["value"] == 12.0
    assert got["count"]["value"] == 2
    assert got["max"]["value"] == 7.0
    assert got["sum"]["selector"] == "default.spend+sum"
    assert got["sum"]["fresh"] is True


def test_selectors_are_case_insensitive_and_echoed_normalized(world: World) -> None:
    world.push([{"card": "g4", "amount": 2.0, "merchant": "m", "ts": ts(world)}])

    r = world.get("Default.SPEND+Sum", card="g4")

    assert r.status_code == 200
    assert r.json()["selector"] == "default.spend+sum"


def test_a_value_past_its_freshness_is_served_as_not_fresh(world: World) -> None:
    world.push([{"card": "g5", "amount": 1.0, "merchant": "old", "ts": ts(world, -120)}])

    body = world.get("last-merchant", card="g5").json()

    assert body["value"] == "old"
    assert body["fresh"] is False


def test_previous_versions_are_read_with_at_minus_n(world: World) -> None:
    world.push(
        [
            {"card": "g6", "amount": 1.0, "merchant": "first", "ts": ts(world, -3)},
            {"card": "g6", "amount": 1.0, "merchant": "second", "ts": ts(world, -2)},
            {"card": "g6", "amount": 1.0, "merchant": "third", "ts": ts(world, -1)},
        ]
    )

    values = [world.get(f"last-merchant{v}", card="g6").json()["value"] for v in ("", "@-1", "@-2")]

    assert values == ["third", "second", "first"]


def test_a_sourceless_feature_is_computed_on_request(world: World) -> None:
    body = world.get("hour-of-day").json()

    assert body["value"] == 12
    assert body["fresh"] is True


# -- batchGet ----------------------------------------------------------------------------------


def test_batch_get_returns_one_result_per_entity_with_per_cell_errors(world: World) -> None:
    world.push([{"card": "b1", "amount": 3.0, "merchant": "x", "ts": ts(world)}])

    r = world.client.post(
        "/api/v1alpha1/features:batchGet",
        json={
            "selectors": ["spend+sum", "last-merchant", "hour-of-day", "SPEND+sum"],
            "entities": [{"card": "b1"}, {"card": "b2"}, {"other": "x"}],
        },
    )

    assert r.status_code == 200
    body = r.json()
    assert body["selectors"] == [
        "default.spend+sum",
        "default.last_merchant",
        "default.hour_of_day",
    ]
    first, second, third = body["results"]
    assert first["keys"] == {"card": "b1"}
    assert first["values"]["default.spend+sum"]["value"] == 3.0
    assert first["values"]["default.last_merchant"] == {
        "value": "x",
        "timestamp": ts(world).replace(".000000", ""),
        "fresh": True,
    }
    assert second["values"]["default.last_merchant"]["value"] is None
    assert third["values"]["default.spend+sum"]["error"]["code"] == "INVALID_ARGUMENT"
    assert "card" in third["values"]["default.spend+sum"]["error"]["message"]
    assert third["values"]["default.hour_of_day"]["value"] == 12


def test_batch_get_accepts_integer_keys(world: World) -> None:
    world.push([{"card": "77", "amount": 4.0, "merchant": "int", "ts": ts(world)}])

    r = world.client.post(
        "/api/v1alpha1/features:batchGet",
        json={"selectors": ["last-merchant"], "entities": [{"card": 77}]},
    )

    assert r.json()["results"][0]["values"]["default.last_merchant"]["value"] == "int"


# -- writes ------------------------------------------------------------------------------------


def test_set_append_incr_and_update_write_what_a_read_then_returns(world: World) -> None:
    c = world.client
    keys = {"card": "w1"}

    assert c.put("/api/v1alpha1/features/price", json={"keys": keys, "value": 9.5}).json()[
        "applied"
    ]
    c.post("/api/v1alpha1/features/tags:append", json={"keys": keys, "value": "a"})
    c.post("/api/v1alpha1/features/tags:update", json={"keys": keys, "value": "b"})
    c.post("/api/v1alpha1/features/visits:incr", json={"keys": keys, "value": 2})
    r = c.post("/api/v1alpha1/features/visits:incr", json={"keys": keys, "value": 3})

    assert r.status_code == 200
    assert r.json()["value"] == 5
    assert world.get("price", card="w1").json()["value"] == 9.5
    assert world.get("tags", card="w1").json()["value"] == ["a", "b"]
    assert world.get("visits", card="w1").json()["value"] == 5


def test_a_write_older_than_the_stored_value_is_not_applied(world: World) -> None:
    c = world.client
    c.put("/api/v1alpha1/features/price", json={"keys": {"card": "w2"}, "value": 1.0})

    r = c.put(
        "/api/v1alpha1/features/price",
        json={"keys": {"card": "w2"}, "value": 2.0, "timestamp": ts(world, -5)},
    )

    assert r.status_code == 200
    assert r.json()["applied"] is False
    assert world.get("price", card="w2").json()["value"] == 1.0


def test_update_of_a_windowed_feature_adds_to_the_window(world: World) -> None:
    c = world.client
    for amount in (1.0, 2.5):
        r = c.post(
            "/api/v1alpha1/features/spend:update", json={"keys": {"card": "w3"}, "value": amount}
        )
        assert r.status_code == 200

    assert world.get("spend+sum", card="w3").json()["value"] == 3.5


# -- errors ------------------------------------------------------------------------------------

F = "/api/v1alpha1/features/"
DS = "/api/v1alpha1/datasources/default/"
BATCH = "/api/v1alpha1/features:batchGet"
CARD = {"card": "e"}

# fmt: off
BAD_REQUESTS = [
    ("malformed selector", "GET", F + "not!a!selector?card=1", None, 400),
    ("missing key", "GET", F + "last-merchant", None, 400),
    ("+fn on a plain feature", "GET", F + "price+sum?card=1", None, 400),
    ("version past keepPrevious", "GET", F + "last-merchant@-3?card=1", None, 400),
    ("+fn and @-N", "GET", F + "spend+sum@-1?card=1", None, 400),
    ("unknown feature", "GET", F + "nope?card=1", None, 404),
    ("unknown namespace", "GET", F + "elsewhere.spend+sum?card=1", None, 404),
    ("unknown route", "GET", "/api/v1alpha1/nothing-here", None, 404),
    ("unknown operation", "POST", F + "price:frobnicate", {"value": 1}, 404),
    ("wrong value type", "PUT", F + "price", {"keys": CARD, "value": "x"}, 422),
    ("append to a scalar", "POST", F + "price:append", {"keys": CARD, "value": 1.0}, 400),
    ("missing value", "PUT", F + "price", {"keys": CARD}, 400),
    ("body not an object", "PUT", F + "price", [1, 2], 400),
    ("bad timestamp", "PUT", F + "price", {"keys": CARD, "value": 1.0, "timestamp": "x"}, 400),
    ("key of a wrong type", "PUT", F + "price", {"keys": {"card": [1]}, "value": 1.0}, 400),
    ("write to a +fn selector", "PUT", F + "spend+sum", {"keys": CARD, "value": 1.0}, 400),
    ("write to a model", "PUT", F + "fraud", {"keys": CARD, "value": 1.0}, 409),
    ("push to a streaming source", "POST", DS + "clickstream/rows", [], 409),
    ("push to an unknown source", "POST", DS + "nope/rows", [], 404),
    ("batchGet without selectors", "POST", BATCH, {"entities": []}, 400),
    ("batchGet, unknown selector", "POST", BATCH, {"selectors": ["nope"], "entities": [{}]}, 404),
    ("batchGet, bad selector", "POST", BATCH, {"selectors": ["a b"], "entities": [{}]}, 400),
    ("batchGet, entity not object", "POST", BATCH, {"selectors": ["price"], "entities": [1]}, 400),
    ("DELETE a feature", "DELETE", F + "price", None, 405),
    ("GET an operation", "GET", F + "price:append", None, 405),
    ("POST without an operation", "POST", F + "price", {"value": 1}, 405),
    ("GET batchGet", "GET", BATCH, None, 405),
    ("PUT healthz", "PUT", "/healthz", None, 405),
    ("not-ready feature", "GET", F + "invalid?card=1", None, 503),
    ("failing program", "GET", F + "broken?card=1", None, 502),
    ("timeout with nothing usable", "GET", F + "slow-score?card=1", None, 504),
]
# fmt: on


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_requests_get_their_status_and_a_json_error_and_the_server_keeps_serving(
    world: World, method: str, path: str, body: Any, status: int
) -> None:
    r = world.client.request(method, path, json=body)

    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert set(error) >= {"code", "message"}
    assert error["message"]
    world.assert_serving()


def test_a_405_names_the_allowed_methods(world: World) -> None:
    r = world.client.get("/api/v1alpha1/features/price:incr")

    assert r.status_code == 405
    assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert r.headers["allow"] == "POST"


def test_malformed_json_is_400(world: World) -> None:
    r = world.client.put(
        "/api/v1alpha1/features/price",
        content=b'{"keys": {"card": "x"}, "value": ',
        headers={"content-type": "application/json"},
    )

    assert r.status_code == 400
    assert "JSON" in r.json()["error"]["message"]
    world.assert_serving()


def test_an_unsupported_content_type_is_415(world: World) -> None:
    r = world.client.put(
        "/api/v1alpha1/features/price",
        content=b"<value>1</value>",
        headers={"content-type": "application/xml"},
    )

    assert r.status_code == 415
    assert r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    world.assert_serving()


def test_a_body_declared_over_the_limit_is_413_before_it_is_read(world: World) -> None:
    big = b'{"value": "' + b"x" * (70 * 1024) + b'"}'

    r = world.client.put(
        "/api/v1alpha1/features/price", content=big, headers={"content-type": "application/json"}
    )

    assert r.status_code == 413
    assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    world.assert_serving()


def test_a_streamed_body_over_the_limit_is_413_while_it_streams(world: World) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'[{"card": "s", "amount": 1, "merchant": "'
        for _ in range(16):  # 16 x 8 KiB, no Content-Length: chunked transfer
            yield b"x" * 8192
        yield b'", "ts": 0}]'

    r = world.client.post(
        "/api/v1alpha1/datasources/default/card-txns/rows",
        content=chunks(),
        headers={"content-type": "application/json"},
    )

    assert r.status_code == 413
    world.assert_serving()


# -- push --------------------------------------------------------------------------------------


def test_push_answers_after_the_writes_so_rows_are_readable_at_once(world: World) -> None:
    r = world.push(
        [
            {"card": "p1", "amount": 1.5, "merchant": "a", "ts": ts(world)},
            {"card": "p2", "amount": 2.5, "merchant": "b", "ts": ts(world)},
        ]
    )

    assert r.status_code == 200
    assert r.json() == {"rows": 2, "updates": 4, "applied": 4}
    assert world.get("spend+sum", card="p1").json()["value"] == 1.5
    assert world.get("last-merchant", card="p2").json()["value"] == "b"


def test_push_reads_ndjson_by_content_type_and_by_sniffing(world: World) -> None:
    lines = (
        f'{{"card": "n1", "amount": 1, "merchant": "nd", "ts": "{ts(world)}"}}\n\n'
        f'{{"card": "n2", "amount": 2, "merchant": "nd", "ts": "{ts(world)}"}}\n'
    ).encode()
    url = "/api/v1alpha1/datasources/default/card_txns/rows"  # the underscore form

    typed = world.client.post(url, content=lines, headers={"content-type": "application/x-ndjson"})
    sniffed = world.client.post(url, content=lines)

    assert typed.status_code == sniffed.status_code == 200
    assert typed.json()["rows"] == sniffed.json()["rows"] == 2
    assert world.get("spend+count", card="n2").json()["value"] == 2


def test_push_with_any_invalid_row_is_422_listing_them_and_writes_nothing(world: World) -> None:
    r = world.push(
        [
            {"card": "v1", "amount": 1.0, "merchant": "ok", "ts": ts(world)},
            {"card": "v2", "amount": 1.0, "merchant": "no time"},
            "not an object",
        ]
    )

    assert r.status_code == 422
    problems = r.json()["error"]["problems"]
    assert [p["row"] for p in problems] == [1, 2]
    assert all(p["reason"] for p in problems)
    assert world.get("last-merchant", card="v1").json()["value"] is None


def test_a_malformed_ndjson_line_is_a_row_problem(world: World) -> None:
    r = world.client.post(
        "/api/v1alpha1/datasources/default/card-txns/rows",
        content=b'{"card": "z"}\n{oops\n',
        headers={"content-type": "application/x-ndjson"},
    )

    assert r.status_code == 422
    assert r.json()["error"]["problems"][0]["row"] == 1


# -- descriptors, operations -------------------------------------------------------------------


def test_descriptors_list_features_and_models_with_their_status(world: World) -> None:
    body = world.client.get("/api/v1alpha1/descriptors").json()

    by = {(d["resource"], d["fqn"]): d for d in body["descriptors"]}
    spend = by[("Feature", "default.spend")]
    assert spend["kind"] == "push"
    assert spend["primitive"] == "float"
    assert spend["aggr"] == ["sum", "count", "max"]
    assert (spend["freshness"], spend["staleness"], spend["timeout"]) == ("1m", "1h", "0s")
    assert spend["keys"] == ["card"]
    assert spend["dataSource"] == "default.card_txns"
    assert spend["ready"] is True
    assert by[("Feature", "default.last_merchant")]["keepPrevious"] == {"versions": 2, "over": "1h"}
    assert by[("Model", "default.fraud")]["kind"] == "model"
    assert by[("Model", "default.fraud")]["dependencies"] == [
        "default.last_merchant",
        "default.spend",
    ]
    invalid = by[("Feature", "default.invalid")]
    assert invalid["ready"] is False
    assert invalid["reason"] != "Ready"
    assert invalid["message"]


def test_one_descriptor_by_selector(world: World) -> None:
    r = world.client.get("/api/v1alpha1/descriptors/Spend+max")

    assert r.status_code == 200
    assert r.json()["selector"] == "default.spend+max"
    assert r.json()["fqn"] == "default.spend"
    assert world.client.get("/api/v1alpha1/descriptors/nope").status_code == 404
    assert world.client.get("/api/v1alpha1/descriptors/price+sum").status_code == 400


def test_health_and_readiness(world: World) -> None:
    assert world.client.get("/healthz").json() == {"status": "ok"}
    assert world.client.get("/readyz").json() == {"status": "ready"}


def test_metrics_count_requests_and_reads_by_result(world: World) -> None:
    world.push([{"card": "m1", "amount": 1.0, "merchant": "a", "ts": ts(world, -120)}])
    world.get("last-merchant", card="m1")  # stale
    world.get("last-merchant", card="m-none")  # miss
    world.get("spend+sum", card="m1")  # hit

    text = world.client.get("/metrics").text

    def value(line_start: str) -> float:
        line = next(ln for ln in text.splitlines() if ln.startswith(line_start))
        return float(line.rsplit(" ", 1)[1])

    assert value('raptor_feature_reads_total{feature="default.last_merchant",result="stale"}') >= 1
    assert value('raptor_feature_reads_total{feature="default.last_merchant",result="miss"}') >= 1
    assert value('raptor_feature_reads_total{feature="default.spend",result="hit"}') >= 1
    assert value('raptor_push_rows_total{datasource="default.card_txns",result="accepted"}') >= 1
    assert (
        value(
            'raptor_http_request_duration_seconds_count{method="GET",'
            'route="/api/v1alpha1/features/{selector}"}'
        )
        >= 3
    )
    assert 'raptor_http_requests_total{code="404"' in text
    assert "nope" not in text.split("raptor_feature_reads_total", 1)[1]


def test_program_errors_are_counted(world: World) -> None:
    world.get("broken", card="pe")

    text = world.client.get("/metrics").text

    assert 'raptor_program_errors_total{feature="default.broken"} ' in text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith('raptor_program_errors_total{feature="default.broken"}')
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1


def test_the_openapi_document_describes_every_route(world: World) -> None:
    doc = world.client.get("/openapi.json").json()

    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) >= {
        "/api/v1alpha1/features/{selector}",
        "/api/v1alpha1/features/{selector}:append",
        "/api/v1alpha1/features/{selector}:incr",
        "/api/v1alpha1/features/{selector}:update",
        "/api/v1alpha1/features:batchGet",
        "/api/v1alpha1/descriptors",
        "/api/v1alpha1/descriptors/{selector}",
        "/api/v1alpha1/datasources/{namespace}/{name}/rows",
        "/get-online-features",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }


# -- with other engines (in-process) -----------------------------------------------------------


class BrokenState(MemoryStateStore):
    """A state store that cannot be reached (as a Redis outage looks to the engine)."""

    async def ping(self) -> None:
        from raptor.errors import StateUnavailable

        raise StateUnavailable("state store: connection refused")

    async def read(self, *args: Any, **kwargs: Any) -> Any:
        from raptor.errors import StateUnavailable

        raise StateUnavailable("state store: connection refused")


async def test_a_state_outage_is_503_with_retry_after_and_readyz_fails() -> None:
    loaded = load_text(MANIFESTS)
    engine = Engine(BrokenState(), catalog=build_catalog(loaded.assets))
    app = create_app(engine, metrics=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://raptor") as c:
        read = await c.get("/api/v1alpha1/features/last-merchant?card=1")
        ready = await c.get("/readyz")
        metrics = await c.get("/metrics")

    assert read.status_code == 503
    assert read.json()["error"]["code"] == "UNAVAILABLE"
    assert read.headers["retry-after"] == "1"
    assert ready.status_code == 503
    assert metrics.status_code == 404  # metrics=False
    await engine.aclose()


async def test_descriptors_show_the_statuses_the_control_plane_reports() -> None:
    loaded = load_text(MANIFESTS)
    engine = Engine(MemoryStateStore(), catalog=build_catalog(loaded.assets))
    statuses = {
        "Feature/default.spend": AssetStatus("Feature", "default.spend", False, "Degraded", "lag"),
        "Feature/default.gone": AssetStatus("Feature", "default.gone", False, "Invalid", "bad"),
    }
    app = create_app(engine, statuses=lambda: statuses)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://raptor"
    ) as c:
        spend = (await c.get("/api/v1alpha1/descriptors/spend+sum")).json()
        gone = (await c.get("/api/v1alpha1/descriptors/gone")).json()

    assert (spend["ready"], spend["reason"], spend["message"]) == (False, "Degraded", "lag")
    assert (gone["ready"], gone["reason"], gone["resource"]) == (False, "Invalid", "Feature")
    await engine.aclose()


async def test_a_body_is_refused_as_soon_as_it_passes_the_limit_not_after() -> None:
    engine = Engine(MemoryStateStore(), catalog=build_catalog(load_text(MANIFESTS).assets))
    app = create_app(engine, max_body=10_000, metrics=False)
    received = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"x" * 4096, "more_body": received < 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1alpha1/datasources/default/card-txns/rows",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-ndjson")],
    }
    await app(scope, receive, send)

    assert sent[0]["status"] == 413
    assert received == 3  # 12 KiB read of the ~4 MB offered
    await engine.aclose()


def test_values_json_cannot_carry_natively_are_still_encoded_as_valid_json() -> None:
    from raptor.server.wire import dumps

    body = dumps({"sum": 2**70, "avg": float("nan"), "at": datetime(2024, 6, 1, tzinfo=UTC)})

    assert body == b'{"sum":1180591620717411303424,"avg":null,"at":"2024-06-01T00:00:00Z"}'
