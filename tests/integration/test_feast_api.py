"""The Feast-compatible ``POST /get-online-features``: Feast's request and column-major response
shape (entity columns first, statuses PRESENT / NOT_FOUND / NULL_VALUE / OUTSIDE_MAX_AGE).

Driven in-process through httpx's ASGI transport (the real-socket tests are in
``test_rest_api.py``); the engine runs on a fake clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from raptor.api.loading import load_text
from raptor.api.timeutil import format_timestamp
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine
from raptor.server.rest import create_app
from raptor.state.memory import MemoryStateStore
from raptor.testing import FakeClock

pytestmark = pytest.mark.integration

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

MANIFESTS = """
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {name: trips, namespace: fleet}
spec: {kind: push, keyFields: [driver_id], timestampField: ts}
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: conv-rate, namespace: fleet}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  keys: [driver_id]
  dataSource: {name: trips}
  builder:
    code: |
      def handler(row, ctx) -> float:
          return row["conv"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: trips, namespace: fleet}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [driver_id]
  dataSource: {name: trips}
  builder:
    aggr: [count, max]
    code: |
      def handler(row, ctx) -> int:
          return row["n"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: zone}
spec:
  primitive: string
  freshness: 1m
  keys: [zone_id]
  builder:
    code: |
      def handler(row, ctx) -> str:
          return "zone-" + ctx.keys["zone_id"]
"""

URL = "/get-online-features"


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, FakeClock]]:
    clock = FakeClock(T0)
    catalog = build_catalog(load_text(MANIFESTS).assets)
    engine = Engine(MemoryStateStore(), clock=clock, catalog=catalog)
    app = create_app(engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://raptor"
    ) as c:
        rows = [
            {"driver_id": "1001", "conv": 0.5, "n": 3, "ts": format_timestamp(T0)},
            {"driver_id": "1001", "conv": 0.7, "n": 9, "ts": format_timestamp(T0)},
            {
                "driver_id": "1002",
                "conv": 0.25,
                "n": 4,
                "ts": format_timestamp(T0 - timedelta(minutes=5)),
            },
        ]
        r = await c.post("/api/v1alpha1/datasources/fleet/trips/rows", json=rows)
        assert r.status_code == 200
        yield c, clock
    await engine.aclose()


async def test_several_entities_and_features_come_back_column_major_entities_first(
    client: tuple[httpx.AsyncClient, FakeClock],
) -> None:
    c, _ = client

    r = await c.post(
        URL,
        json={
            "features": ["fleet.conv-rate", "fleet:trips+count", "fleet.trips+max"],
            "entities": {"driver_id": [1001, 1002, 1003]},
        },
    )

    assert r.status_code == 200
    body = r.json()
    assert body["metadata"] == {
        "feature_names": ["driver_id", "conv_rate", "trips+count", "trips+max"]
    }
    ids, conv, count, mx = body["results"]
    assert ids == {
        "values": [1001, 1002, 1003],
        "statuses": ["PRESENT"] * 3,
        "event_timestamps": ["1970-01-01T00:00:00Z"] * 3,
    }
    assert conv["values"] == [0.7, 0.25, None]
    assert conv["statuses"] == ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    assert conv["event_timestamps"] == [
        "2024-06-01T12:00:00Z",
        "2024-06-01T11:55:00Z",
        "1970-01-01T00:00:00Z",
    ]
    assert count["values"] == [2, 1, 0]
    assert count["statuses"] == ["PRESENT"] * 3
    assert mx["values"] == [9, 4, None]
    assert mx["statuses"] == ["PRESENT", "PRESENT", "NULL_VALUE"]


async def test_full_feature_names_are_the_normalized_selectors(
    client: tuple[httpx.AsyncClient, FakeClock],
) -> None:
    c, _ = client

    r = await c.post(
        URL,
        json={
            "features": ["fleet.conv-rate", "fleet:trips+count"],
            "entities": {"driver_id": ["1001"]},
            "full_feature_names": True,
        },
    )

    assert r.json()["metadata"]["feature_names"] == [
        "driver_id",
        "fleet.conv_rate",
        "fleet.trips+count",
    ]


async def test_several_entity_columns_are_all_echoed_and_each_feature_takes_its_keys(
    client: tuple[httpx.AsyncClient, FakeClock],
) -> None:
    c, _ = client

    r = await c.post(
        URL,
        json={
            "features": ["fleet.conv-rate", "zone"],
            "entities": {"driver_id": ["1001", "1002"], "zone_id": ["a", "b"]},
        },
    )

    body = r.json()
    assert body["metadata"]["feature_names"] == ["driver_id", "zone_id", "conv_rate", "zone"]
    assert [col["values"] for col in body["results"]] == [
        ["1001", "1002"],
        ["a", "b"],
        [0.7, 0.25],
        ["zone-a", "zone-b"],
    ]


BAD: list[tuple[str, Any, int]] = [
    ("not an object", [1], 400),
    ("no features", {"features": [], "entities": {"driver_id": [1]}}, 400),
    ("feature service", {"feature_service": "svc", "entities": {"driver_id": [1]}}, 400),
    ("no entities", {"features": ["fleet.conv-rate"]}, 400),
    (
        "columns of different lengths",
        {"features": ["zone"], "entities": {"zone_id": ["a"], "x": [1, 2]}},
        400,
    ),
    ("entity value of a bad type", {"features": ["zone"], "entities": {"zone_id": [1.5]}}, 400),
    ("missing key column", {"features": ["fleet.conv-rate"], "entities": {"zone_id": ["a"]}}, 400),
    ("malformed selector", {"features": ["no way"], "entities": {"zone_id": ["a"]}}, 400),
    ("unknown feature", {"features": ["fleet.nope"], "entities": {"zone_id": ["a"]}}, 404),
]


@pytest.mark.parametrize(("body", "status"), [pytest.param(b, s, id=i) for i, b, s in BAD])
async def test_bad_feast_requests_are_4xx_json_errors(
    client: tuple[httpx.AsyncClient, FakeClock], body: Any, status: int
) -> None:
    c, _ = client

    r = await c.post(URL, json=body)

    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
