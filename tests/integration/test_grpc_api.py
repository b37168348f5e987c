"""The gRPC accessor, driven over a real loopback channel with the generated stubs.

A real ``grpc.aio`` server (:func:`raptor.server.grpc.create_grpc_server`) serves an Engine over
the in-memory state; every test talks to it through ``EngineServiceStub`` (and the health and
reflection stubs) exactly as a client would. Bad-input tests check the status code and then
that the server still answers.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from raptor.api.loading import load_text
from raptor.api.proto.core.v1alpha1 import api_pb2, api_pb2_grpc, types_pb2
from raptor.engine.catalog import AssetStatus, build_catalog
from raptor.engine.engine import Engine
from raptor.errors import FeatureTimeout, NotReady, StateUnavailable
from raptor.server.grpc import SERVICE_NAME, StatusSource, create_grpc_server
from raptor.state.memory import MemoryStateStore

pytestmark = pytest.mark.integration

MANIFESTS = """
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {name: events, namespace: default}
spec: {kind: push, keyFields: [user], timestampField: ts}
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: counter, namespace: default}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  keys: [user]
  keepPrevious: {versions: 2, over: 1h}
  dataSource: {name: events}
  builder:
    code: |
      def handler(row, ctx) -> int:
          return row["n"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: amount, namespace: default}
spec:
  primitive: float
  freshness: 1h
  staleness: 24h
  keys: [user]
  dataSource: {name: events}
  builder:
    code: |
      def handler(row, ctx) -> float:
          return row["x"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: nickname, namespace: default}
spec:
  primitive: string
  freshness: 1h
  staleness: 24h
  keys: [user]
  dataSource: {name: events}
  builder:
    code: |
      def handler(row, ctx) -> str:
          return row["s"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: active, namespace: default}
spec:
  primitive: bool
  freshness: 1h
  staleness: 24h
  keys: [user]
  dataSource: {name: events}
  builder:
    code: |
      def handler(row, ctx) -> bool:
          return row["b"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: seen-at, namespace: default}
spec:
  primitive: timestamp
  freshness: 1h
  staleness: 24h
  keys: [user]
  dataSource: {name: events}
  builder:
    code: |
      def handler(row, ctx) -> datetime:
          return ctx.timestamp
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: tags, namespace: default}
spec:
  primitive: "[]string"
  freshness: 1h
  staleness: 24h
  keys: [user]
  dataSource: {name: events}
  builder:
    code: |
      def handler(row, ctx) -> list[str]:
          return row["tags"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: scores, namespace: default}
spec:
  primitive: "[]int"
  freshness: 1h
  staleness: 24h
  keys: [user]
  dataSource: {name: events}
  builder:
    code: |
      def handler(row, ctx) -> list[int]:
          return row["scores"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: visits, namespace: default}
spec:
  primitive: "[]timestamp"
  freshness: 1h
  staleness: 24h
  keys: [user]
  dataSource: {name: events}
  builder:
    code: |
      def handler(row, ctx) -> list[datetime]:
          return [ctx.timestamp]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: spend, namespace: default}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  keys: [user]
  dataSource: {name: events}
  builder:
    aggrGranularity: 1m
    aggr: [sum, count]
    code: |
      def handler(row, ctx) -> float:
          return row["x"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: shop-total, namespace: shop}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  keys: [shop]
  builder:
    kind: push
    code: |
      def handler(row, ctx) -> int:
          return row["n"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Model
metadata: {name: churn, namespace: default}
spec:
  freshness: 1m
  staleness: 1h
  features: [counter, amount]
  keys: [user]
  modelFramework: sklearn
  modelServer: builtin
  storageURI: file:///nowhere/model.pkl
"""

BIG = 2**40 + 7  # does not fit in 32 bits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Api:
    engine: Engine
    channel: grpc.aio.Channel
    stub: api_pb2_grpc.EngineServiceStub


@asynccontextmanager
async def serving(manifests: str, statuses: StatusSource | None = None) -> AsyncIterator[Api]:
    loaded = load_text(manifests)
    assert not loaded.errors, loaded.errors
    engine = Engine(MemoryStateStore(), catalog=build_catalog(loaded.assets))
    address = f"127.0.0.1:{free_port()}"
    server = create_grpc_server(engine, address, statuses=statuses)
    await server.start()
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Api(engine, channel, api_pb2_grpc.EngineServiceStub(channel))
    finally:
        await channel.close()
        await server.stop(None)
        await engine.aclose()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with serving(MANIFESTS) as served:
        assert not served.engine.catalog.errors, served.engine.catalog.errors
        yield served


def scalar(**kw: object) -> types_pb2.Value:
    return types_pb2.Value(scalar_value=types_pb2.Scalar(**kw))


def ts(dt: datetime) -> types_pb2.Scalar:
    s = types_pb2.Scalar()
    s.timestamp_value.FromDatetime(dt)
    return s


async def assert_serving(api: Api) -> None:
    resp = await api.stub.FeatureDescriptor(api_pb2.FeatureDescriptorRequest(selector="counter"))
    assert resp.feature_descriptor.fqn == "default.counter"


async def expect_status(api: Api, call: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    await assert_serving(api)
    return info.value.details() or ""


# -- reads and writes --------------------------------------------------------------------------


async def test_set_then_get_round_trips_an_int64_beyond_32_bits(api: Api) -> None:
    await api.stub.Set(
        api_pb2.SetRequest(selector="counter", keys={"user": "u1"}, value=scalar(int_value=BIG))
    )
    resp = await api.stub.Get(api_pb2.GetRequest(selector="counter", keys={"user": "u1"}))
    v = resp.value
    assert v.value.scalar_value.int_value == BIG
    assert (v.fqn, dict(v.keys), v.fresh) == ("default.counter", {"user": "u1"}, True)
    assert abs(v.timestamp.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_get_fills_the_feature_descriptor(api: Api) -> None:
    await api.stub.Set(
        api_pb2.SetRequest(selector="amount", keys={"user": "u1"}, value=scalar(float_value=2.5))
    )
    resp = await api.stub.Get(api_pb2.GetRequest(selector="amount", keys={"user": "u1"}))
    d = resp.feature_descriptor
    assert resp.value.value.scalar_value.float_value == 2.5
    assert (d.fqn, d.primitive, list(d.keys)) == (
        "default.amount",
        types_pb2.PRIMITIVE_FLOAT,
        ["user"],
    )
    assert (d.freshness.seconds, d.staleness.seconds) == (3600, 86400)
    assert (d.builder, d.data_source, d.ready) == ("push", "default.events", True)


async def test_an_int_is_accepted_for_a_float_feature(api: Api) -> None:
    await api.stub.Set(
        api_pb2.SetRequest(selector="amount", keys={"user": "u1"}, value=scalar(int_value=3))
    )
    resp = await api.stub.Get(api_pb2.GetRequest(selector="amount", keys={"user": "u1"}))
    assert resp.value.value.scalar_value.WhichOneof("value") == "float_value"
    assert resp.value.value.scalar_value.float_value == 3.0


async def test_string_bool_and_timestamp_values_round_trip(api: Api) -> None:
    when = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    await api.stub.Set(
        api_pb2.SetRequest(selector="nickname", keys={"user": "u"}, value=scalar(string_value="é"))
    )
    await api.stub.Set(
        api_pb2.SetRequest(selector="active", keys={"user": "u"}, value=scalar(bool_value=True))
    )
    await api.stub.Set(
        api_pb2.SetRequest(
            selector="seen_at", keys={"user": "u"}, value=types_pb2.Value(scalar_value=ts(when))
        )
    )
    got = {}
    for sel in ("nickname", "active", "seen-at"):
        resp = await api.stub.Get(api_pb2.GetRequest(selector=sel, keys={"user": "u"}))
        got[sel] = resp.value.value.scalar_value
    assert got["nickname"].string_value == "é"
    assert got["active"].WhichOneof("value") == "bool_value"
    assert got["active"].bool_value is True
    assert got["seen-at"].timestamp_value.ToDatetime(tzinfo=UTC) == when


async def test_write_timestamp_is_the_event_time_and_is_returned(api: Api) -> None:
    when = datetime.now(UTC) - timedelta(minutes=5)
    req = api_pb2.SetRequest(selector="counter", keys={"user": "t"}, value=scalar(int_value=1))
    req.timestamp.FromDatetime(when)
    resp = await api.stub.Set(req)
    assert resp.timestamp.ToDatetime(tzinfo=UTC) == when
    got = await api.stub.Get(api_pb2.GetRequest(selector="counter", keys={"user": "t"}))
    assert got.value.timestamp.ToDatetime(tzinfo=UTC) == when


async def test_lists_set_append_and_update(api: Api) -> None:
    await api.stub.Set(
        api_pb2.SetRequest(
            selector="tags",
            keys={"user": "u"},
            value=types_pb2.Value(
                list_value=types_pb2.List(values=[types_pb2.Scalar(string_value="a")])
            ),
        )
    )
    await api.stub.Append(
        api_pb2.AppendRequest(
            fqn="tags", keys={"user": "u"}, value=types_pb2.Scalar(string_value="b")
        )
    )
    await api.stub.Update(
        api_pb2.UpdateRequest(selector="tags", keys={"user": "u"}, value=scalar(string_value="c"))
    )
    resp = await api.stub.Get(api_pb2.GetRequest(selector="tags", keys={"user": "u"}))
    assert [s.string_value for s in resp.value.value.list_value.values] == ["a", "b", "c"]

    await api.stub.Append(
        api_pb2.AppendRequest(
            fqn="scores", keys={"user": "u"}, value=types_pb2.Scalar(int_value=BIG)
        )
    )
    resp = await api.stub.Get(api_pb2.GetRequest(selector="scores", keys={"user": "u"}))
    assert [s.int_value for s in resp.value.value.list_value.values] == [BIG]


async def test_list_of_timestamps_round_trips(api: Api) -> None:
    a = datetime(2024, 1, 1, tzinfo=UTC)
    b = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    await api.stub.Set(
        api_pb2.SetRequest(
            selector="visits",
            keys={"user": "u"},
            value=types_pb2.Value(list_value=types_pb2.List(values=[ts(a), ts(b)])),
        )
    )
    resp = await api.stub.Get(api_pb2.GetRequest(selector="visits", keys={"user": "u"}))
    values = resp.value.value.list_value.values
    assert [s.timestamp_value.ToDatetime(tzinfo=UTC) for s in values] == [a, b]


async def test_incr_adds_to_an_int_beyond_32_bits(api: Api) -> None:
    for _ in range(2):
        await api.stub.Incr(
            api_pb2.IncrRequest(
                fqn="counter", keys={"user": "i"}, value=types_pb2.Scalar(int_value=BIG)
            )
        )
    resp = await api.stub.Get(api_pb2.GetRequest(selector="counter", keys={"user": "i"}))
    assert resp.value.value.scalar_value.int_value == 2 * BIG


async def test_windowed_feature_sum_and_count(api: Api) -> None:
    for x in (1.5, 2.5, 4.0):
        await api.stub.Update(
            api_pb2.UpdateRequest(selector="spend", keys={"user": "w"}, value=scalar(float_value=x))
        )
    total = await api.stub.Get(api_pb2.GetRequest(selector="spend+sum", keys={"user": "w"}))
    count = await api.stub.Get(api_pb2.GetRequest(selector="Spend+COUNT", keys={"user": "w"}))
    assert total.value.value.scalar_value.float_value == 8.0
    assert count.value.value.scalar_value.int_value == 3
    assert (total.value.fqn, count.value.fqn) == ("default.spend+sum", "default.spend+count")
    assert total.value.fresh
    assert count.value.fresh
    assert list(total.feature_descriptor.aggr) == [types_pb2.AGGR_FN_SUM, types_pb2.AGGR_FN_COUNT]


async def test_empty_window_counts_zero(api: Api) -> None:
    count = await api.stub.Get(api_pb2.GetRequest(selector="spend+count", keys={"user": "none"}))
    assert count.value.value.scalar_value.int_value == 0


async def test_keep_previous_reads_the_replaced_value(api: Api) -> None:
    for n in (1, 2, 3):
        await api.stub.Set(
            api_pb2.SetRequest(selector="counter", keys={"user": "k"}, value=scalar(int_value=n))
        )
    now = await api.stub.Get(api_pb2.GetRequest(selector="counter", keys={"user": "k"}))
    prev = await api.stub.Get(api_pb2.GetRequest(selector="counter@-1", keys={"user": "k"}))
    prev2 = await api.stub.Get(api_pb2.GetRequest(selector="counter@-2", keys={"user": "k"}))
    assert [r.value.value.scalar_value.int_value for r in (now, prev, prev2)] == [3, 2, 1]
    assert prev.value.fqn == "default.counter@-1"
    assert prev.feature_descriptor.keep_previous.versions == 2


async def test_absent_value_is_ok_with_value_unset_and_not_fresh(api: Api) -> None:
    resp = await api.stub.Get(api_pb2.GetRequest(selector="counter", keys={"user": "nobody"}))
    assert not resp.value.HasField("value")
    assert not resp.value.HasField("timestamp")
    assert resp.value.fresh is False
    assert dict(resp.value.keys) == {"user": "nobody"}


async def test_other_namespaces_are_addressed_by_prefix(api: Api) -> None:
    await api.stub.Set(
        api_pb2.SetRequest(
            selector="shop.shop_total", keys={"shop": "s"}, value=scalar(int_value=9)
        )
    )
    resp = await api.stub.Get(api_pb2.GetRequest(selector="shop.shop-total", keys={"shop": "s"}))
    assert resp.value.value.scalar_value.int_value == 9
    await expect_status(
        api,
        api.stub.Get(api_pb2.GetRequest(selector="shop_total", keys={"shop": "s"})),
        grpc.StatusCode.NOT_FOUND,
    )


# -- uuid, descriptors, batch ------------------------------------------------------------------


async def test_uuid_is_echoed_or_made(api: Api) -> None:
    given = str(uuid.uuid4())
    resp = await api.stub.Get(
        api_pb2.GetRequest(uuid=given, selector="counter", keys={"user": "u"})
    )
    assert resp.uuid == given
    made = await api.stub.Get(api_pb2.GetRequest(selector="counter", keys={"user": "u"}))
    assert uuid.UUID(made.uuid).version == 4
    w = await api.stub.Set(
        api_pb2.SetRequest(
            uuid="abc", selector="counter", keys={"user": "u"}, value=scalar(int_value=1)
        )
    )
    assert w.uuid == "abc"
    d = await api.stub.FeatureDescriptor(api_pb2.FeatureDescriptorRequest(selector="counter"))
    assert uuid.UUID(d.uuid)


async def test_feature_descriptor_of_a_windowed_feature(api: Api) -> None:
    resp = await api.stub.FeatureDescriptor(
        api_pb2.FeatureDescriptorRequest(uuid="x", selector="default.spend")
    )
    d = resp.feature_descriptor
    assert resp.uuid == "x"
    assert (d.fqn, d.primitive, list(d.keys)) == (
        "default.spend",
        types_pb2.PRIMITIVE_FLOAT,
        ["user"],
    )
    assert list(d.aggr) == [types_pb2.AGGR_FN_SUM, types_pb2.AGGR_FN_COUNT]
    assert (d.freshness.seconds, d.staleness.seconds) == (60, 3600)
    assert (d.ready, d.status_reason) == (True, "Ready")
    assert not d.HasField("keep_previous")


async def test_feature_descriptor_of_a_model(api: Api) -> None:
    resp = await api.stub.FeatureDescriptor(api_pb2.FeatureDescriptorRequest(selector="churn"))
    d = resp.feature_descriptor
    assert (d.fqn, d.builder, list(d.keys)) == ("default.churn", "model", ["user"])


async def test_feature_descriptor_reports_the_status_source() -> None:
    rejected = AssetStatus(
        "Feature", "default.counter", False, "UpdateRejected", "new version: bad program"
    )
    async with serving(MANIFESTS, statuses=lambda: {"Feature/default.counter": rejected}) as api:
        resp = await api.stub.FeatureDescriptor(
            api_pb2.FeatureDescriptorRequest(selector="counter")
        )
    d = resp.feature_descriptor
    assert (d.fqn, d.ready, d.status_reason) == ("default.counter", False, "UpdateRejected")
    assert d.status_message == "new version: bad program"


BROKEN = """
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: broken, namespace: default}
spec:
  primitive: int
  freshness: 1m
  keys: [user]
  builder:
    kind: push
    code: |
      def handler(row, ctx) -> str:
          return "not an int"
"""


async def test_a_feature_that_is_not_ready_is_unavailable_with_its_reason() -> None:
    async with serving(BROKEN) as api:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.stub.Get(api_pb2.GetRequest(selector="broken", keys={"user": "u"}))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "not ready" in (info.value.details() or "")


async def test_batch_get_reads_every_selector_for_every_entity(api: Api) -> None:
    for user, n in (("a", 1), ("b", BIG)):
        await api.stub.Set(
            api_pb2.SetRequest(selector="counter", keys={"user": user}, value=scalar(int_value=n))
        )
    await api.stub.Update(
        api_pb2.UpdateRequest(selector="spend", keys={"user": "a"}, value=scalar(float_value=5))
    )
    resp = await api.stub.BatchGet(
        api_pb2.BatchGetRequest(
            uuid="batch",
            selectors=["counter", "spend+sum", "Default.Spend+Count"],
            entities=[
                api_pb2.EntityKeys(keys={"user": "a"}),
                api_pb2.EntityKeys(keys={"user": "b"}),
                api_pb2.EntityKeys(keys={"user": "zz"}),
                api_pb2.EntityKeys(keys={"other": "x"}),
            ],
        )
    )
    assert resp.uuid == "batch"
    assert list(resp.selectors) == ["default.counter", "default.spend+sum", "default.spend+count"]
    rows = resp.rows
    assert [dict(r.keys) for r in rows[:3]] == [{"user": "a"}, {"user": "b"}, {"user": "zz"}]
    a, b, zz, bad = rows
    assert a.cells[0].value.value.scalar_value.int_value == 1
    assert a.cells[1].value.value.scalar_value.float_value == 5.0
    assert a.cells[2].value.value.scalar_value.int_value == 1
    assert b.cells[0].value.value.scalar_value.int_value == BIG
    assert not zz.cells[0].value.HasField("value")
    assert not zz.cells[0].HasField("error")
    # A key missing for one entity fails its cells, not the batch.
    assert [c.error.code for c in bad.cells] == ["INVALID_ARGUMENT"] * 3
    assert "user" in bad.cells[0].error.message
    assert bad.cells[0].value.fqn == "default.counter"


async def test_batch_get_with_an_unknown_selector_is_not_found(api: Api) -> None:
    await expect_status(
        api,
        api.stub.BatchGet(
            api_pb2.BatchGetRequest(
                selectors=["counter", "nope"], entities=[api_pb2.EntityKeys(keys={"user": "a"})]
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_batch_get_without_selectors_is_invalid(api: Api) -> None:
    await expect_status(
        api, api.stub.BatchGet(api_pb2.BatchGetRequest()), grpc.StatusCode.INVALID_ARGUMENT
    )


# -- bad input -> status codes, and the server keeps serving -----------------------------------


@pytest.mark.parametrize(
    ("selector", "keys", "code", "needle"),
    [
        ("not a selector!", {"user": "u"}, grpc.StatusCode.INVALID_ARGUMENT, "malformed selector"),
        ("", {"user": "u"}, grpc.StatusCode.INVALID_ARGUMENT, "malformed selector"),
        ("counter", {}, grpc.StatusCode.INVALID_ARGUMENT, "user"),
        ("missing", {"user": "u"}, grpc.StatusCode.NOT_FOUND, "default.missing"),
        ("nowhere.counter", {"user": "u"}, grpc.StatusCode.NOT_FOUND, "nowhere.counter"),
        ("counter+sum", {"user": "u"}, grpc.StatusCode.INVALID_ARGUMENT, "not an aggregation"),
        ("spend+max", {"user": "u"}, grpc.StatusCode.INVALID_ARGUMENT, "no +max"),
        ("spend", {"user": "u"}, grpc.StatusCode.INVALID_ARGUMENT, "several aggregations"),
        ("counter@-3", {"user": "u"}, grpc.StatusCode.INVALID_ARGUMENT, "keeps 2"),
    ],
)
async def test_bad_get_has_a_clear_status(
    api: Api, selector: str, keys: dict[str, str], code: grpc.StatusCode, needle: str
) -> None:
    details = await expect_status(
        api, api.stub.Get(api_pb2.GetRequest(selector=selector, keys=keys)), code
    )
    assert needle in details


async def test_wrong_value_type_is_invalid_argument(api: Api) -> None:
    details = await expect_status(
        api,
        api.stub.Set(
            api_pb2.SetRequest(
                selector="counter", keys={"user": "u"}, value=scalar(string_value="x")
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "expected int" in details
    await expect_status(
        api,
        api.stub.Set(
            api_pb2.SetRequest(
                selector="counter",
                keys={"user": "u"},
                value=types_pb2.Value(list_value=types_pb2.List()),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_empty_value_oneofs_are_invalid_argument(api: Api) -> None:
    no_value = api_pb2.SetRequest(selector="counter", keys={"user": "u"})
    assert "value is required" in await expect_status(
        api, api.stub.Set(no_value), grpc.StatusCode.INVALID_ARGUMENT
    )
    empty_value = api_pb2.SetRequest(
        selector="counter", keys={"user": "u"}, value=types_pb2.Value()
    )
    assert "value is empty" in await expect_status(
        api, api.stub.Set(empty_value), grpc.StatusCode.INVALID_ARGUMENT
    )
    empty_scalar = api_pb2.UpdateRequest(
        selector="counter",
        keys={"user": "u"},
        value=types_pb2.Value(scalar_value=types_pb2.Scalar()),
    )
    assert "value.scalar_value is empty" in await expect_status(
        api, api.stub.Update(empty_scalar), grpc.StatusCode.INVALID_ARGUMENT
    )
    empty_append = api_pb2.AppendRequest(fqn="tags", keys={"user": "u"}, value=types_pb2.Scalar())
    await expect_status(api, api.stub.Append(empty_append), grpc.StatusCode.INVALID_ARGUMENT)
    no_incr = api_pb2.IncrRequest(fqn="counter", keys={"user": "u"})
    await expect_status(api, api.stub.Incr(no_incr), grpc.StatusCode.INVALID_ARGUMENT)


async def test_garbage_bytes_are_not_internal(api: Api) -> None:
    raw = api.channel.unary_unary(f"/{SERVICE_NAME}/Get")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(b"\xff\xff\xff\xff")
    assert info.value.code() != grpc.StatusCode.INTERNAL
    await assert_serving(api)


async def test_write_errors_have_clear_statuses(api: Api) -> None:
    await expect_status(
        api,
        api.stub.Set(
            api_pb2.SetRequest(selector="churn", keys={"user": "u"}, value=scalar(int_value=1))
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    await expect_status(
        api,
        api.stub.Append(
            api_pb2.AppendRequest(
                fqn="counter", keys={"user": "u"}, value=types_pb2.Scalar(int_value=1)
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_status(
        api,
        api.stub.Incr(
            api_pb2.IncrRequest(
                fqn="nickname", keys={"user": "u"}, value=types_pb2.Scalar(int_value=1)
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_status(
        api,
        api.stub.Set(
            api_pb2.SetRequest(selector="nope", keys={"user": "u"}, value=scalar(int_value=1))
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_status(
        api,
        api.stub.Set(
            api_pb2.SetRequest(selector="counter@-1", keys={"user": "u"}, value=scalar(int_value=1))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_status(
        api,
        api.stub.FeatureDescriptor(api_pb2.FeatureDescriptorRequest(selector="bad selector")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StateUnavailable("state store did not answer within 2s"), grpc.StatusCode.UNAVAILABLE),
        (FeatureTimeout("feature x: no value within 1s"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (NotReady("feature x is not ready"), grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_engine_errors_map_through_the_error_table(
    api: Api, monkeypatch: pytest.MonkeyPatch, error: Exception, code: grpc.StatusCode
) -> None:
    async def failing(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(api.engine, "get", failing)
    details = await expect_status(
        api, api.stub.Get(api_pb2.GetRequest(selector="counter", keys={"user": "u"})), code
    )
    assert details == str(error)


async def test_an_unexpected_error_is_internal_and_logged(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr(api.engine.state, "read", broken)
    details = await expect_status(
        api,
        api.stub.Get(api_pb2.GetRequest(selector="counter", keys={"user": "u"})),
        grpc.StatusCode.INTERNAL,
    )
    assert "secret" not in details
    assert "ZeroDivisionError" in caplog.text


# -- health and reflection ---------------------------------------------------------------------


async def test_health_is_serving_while_state_answers(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    for service in ("", SERVICE_NAME):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING

    async def down() -> None:
        raise StateUnavailable("redis is down")

    monkeypatch.setattr(api.engine.state, "ping", down)
    resp = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_watch_sends_the_current_status(api: Api) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    call = health.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await call.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    call.cancel()


async def test_reflection_lists_and_describes_the_service(api: Api) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(api.channel)

    async def ask(
        req: reflection_pb2.ServerReflectionRequest,
    ) -> reflection_pb2.ServerReflectionResponse:
        call = stub.ServerReflectionInfo()
        await call.write(req)
        resp = await call.read()
        await call.done_writing()
        return resp  # type: ignore[no-any-return]

    listed = await ask(reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names

    described = await ask(
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in described.file_descriptor_response.file_descriptor_proto
    ]
    api_file = next(f for f in files if f.name == "core/v1alpha1/api.proto")
    assert api_file.package == "core.v1alpha1"
    methods = {m.name for m in api_file.service[0].method}
    assert methods == {"FeatureDescriptor", "Get", "Set", "Append", "Incr", "Update", "BatchGet"}


# -- wire compatibility with upstream's int32 Scalar -------------------------------------------


def upstream_scalar_class() -> type:
    """``Scalar`` as upstream declares it (``int32 int_value = 2``), in a private pool."""
    fdp = descriptor_pb2.FileDescriptorProto()
    types_pb2.DESCRIPTOR.CopyToProto(fdp)
    fdp.name = "upstream/core/v1alpha1/types.proto"
    scalar_msg = next(m for m in fdp.message_type if m.name == "Scalar")
    int_field = next(f for f in scalar_msg.field if f.name == "int_value")
    int_field.type = descriptor_pb2.FieldDescriptorProto.TYPE_INT32
    pool = descriptor_pool.DescriptorPool()
    for dep in ("google/protobuf/duration.proto", "google/protobuf/timestamp.proto"):
        dep_proto = descriptor_pb2.FileDescriptorProto()
        descriptor_pool.Default().FindFileByName(dep).CopyToProto(dep_proto)
        pool.Add(dep_proto)
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("core.v1alpha1.Scalar"))


def test_upstream_int32_clients_read_and_write_small_ints() -> None:
    upstream = upstream_scalar_class()
    for n in (0, 1, -5, 2**31 - 1, -(2**31)):
        ours = types_pb2.Scalar(int_value=n)
        assert upstream.FromString(ours.SerializeToString()).int_value == n
        assert types_pb2.Scalar.FromString(upstream(int_value=n).SerializeToString()).int_value == n
