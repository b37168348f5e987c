"""The consume→update loop and per-event processing, on the in-memory state store.

The broker here is :class:`ListSource`, an in-memory stand-in that implements the source
contract (re-delivers whatever was not acknowledged, like every real broker); the real
brokers are exercised in ``tests/integration/test_runner_*.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from raptor.api.loading import load_text
from raptor.api.timeutil import format_timestamp
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine
from raptor.errors import StateUnavailable
from raptor.runners.config import Secrets
from raptor.runners.events import EventProcessor, Reason
from raptor.runners.loop import RunnerSettings, StreamRunner
from raptor.runners.metrics import render
from raptor.runners.source import DeadLetter, Message, SourceError
from raptor.state.memory import MemoryStateStore
from raptor.testing import FakeClock

MANIFESTS = """\
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {name: clicks, namespace: default}
spec:
  kind: streaming
  config:
    - {name: kind, value: redis}
    - {name: url, value: "redis://unused"}
    - {name: stream, value: clicks}
%(extra)s
  keyFields: [user]
  timestampField: ts
  schema: %(schema)s
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: amount, namespace: default}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [user]
  dataSource: {name: clicks}
  builder:
    aggr: [sum, count]
    aggrGranularity: 1m
    code: |
      def handler(row, ctx) -> int:
          if row.get("boom"):
              raise ValueError("boom")
          if row.get("bad_type"):
              return "x"
          return row["amount"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: page, namespace: default}
spec:
  primitive: string
  freshness: 1h
  staleness: 24h
  keys: [user]
  dataSource: {name: clicks}
  builder:
    code: |
      def handler(row, ctx) -> str:
          return row.get("meta.page")
"""


def make_engine(clock: FakeClock, *, extra: str = "", schema: str = "~") -> Engine:
    loaded = load_text(MANIFESTS % {"extra": extra, "schema": schema})
    assert not loaded.errors, loaded.errors
    catalog = build_catalog(loaded.assets)
    assert not catalog.errors, catalog.errors
    return Engine(MemoryStateStore(), clock=clock, catalog=catalog)


class ListSource:
    """In-memory broker: one partition; ``fetch`` returns what was not acknowledged yet."""

    prefetch = True
    description = "list source"
    dead_letter_target = "clicks.dead"

    def __init__(self, rows: Sequence[bytes | Mapping[str, Any]]) -> None:
        self.messages = [
            Message(r, "p0", str(i), 1_717_200_000_000_000 + i, None, i) for i, r in enumerate(rows)
        ]
        self.acked: set[int] = set()
        self.cursor = 0
        self.dead: list[DeadLetter] = []
        self.fail_acks = 0
        self.started = 0

    def redeliver(self) -> None:
        """What a broker does for a restarted consumer: unacknowledged messages come back."""
        self.cursor = 0

    async def start(self, resume: Mapping[str, str]) -> None:
        self.started += 1

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        out: list[Message] = []
        while self.cursor < len(self.messages) and len(out) < max_messages:
            m = self.messages[self.cursor]
            self.cursor += 1
            if m.handle not in self.acked:
                out.append(m)
        if not out:
            await asyncio.sleep(0.001)
        return out

    async def ack(self, messages: Sequence[Message]) -> None:
        if self.fail_acks:
            self.fail_acks -= 1
            raise SourceError("ack refused")
        self.acked.update(m.handle for m in messages)

    async def dead_letter(self, entries: Sequence[DeadLetter]) -> None:
        self.dead.extend(entries)

    def lag(self) -> Mapping[str, int]:
        return {"p0": len(self.messages) - len(self.acked)}

    async def close(self) -> None:
        pass


def row(user: str, amount: int, clock: FakeClock, **extra: Any) -> bytes:
    return json.dumps(
        {"user": user, "amount": amount, "ts": format_timestamp(clock.now()), **extra}
    ).encode()


SETTINGS = RunnerSettings(
    consumer="t", fetch_timeout=0.01, retry_initial=0.001, retry_max=0.01,
    secrets=Secrets(secrets_dir=None),
)  # fmt: skip


async def drive(runner: StreamRunner, source: ListSource, until: int) -> None:
    """Run until ``until`` messages were acknowledged, then stop (graceful)."""
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    for _ in range(2000):
        if len(source.acked) >= until:
            break
        await asyncio.sleep(0.002)
    stop.set()
    await asyncio.wait_for(task, 5)


async def window(engine: Engine, user: str) -> tuple[Any, Any]:
    s = await engine.get("amount+sum", {"user": user})
    c = await engine.get("amount+count", {"user": user})
    return s.value, c.value


async def test_events_become_window_and_value_updates() -> None:
    clock = FakeClock()
    engine = make_engine(clock)
    rows = [row("a", i, clock, meta={"page": f"/p{i}"}) for i in range(1, 11)] + [
        row("b", 5, clock)
    ]
    src = ListSource(rows)
    runner = StreamRunner(
        engine, engine.catalog.data_sources["default.clicks"], SETTINGS, source=src
    )
    await drive(runner, src, len(rows))
    assert await window(engine, "a") == (55, 10)
    assert await window(engine, "b") == (5, 1)
    assert (await engine.get("page", {"user": "a"})).value == "/p10"  # nested → meta.page
    assert runner.metrics.applied == 11
    assert runner.metrics.dead == 0


async def test_poison_messages_go_to_the_dead_letter_and_the_rest_is_counted() -> None:
    clock = FakeClock()
    engine = make_engine(clock)
    good = [row("a", 1, clock) for _ in range(3)]
    poison = [
        b"{not json",
        b"[1, 2]",
        json.dumps({"user": "a", "amount": 1}).encode(),
        json.dumps({"user": "a", "amount": 1, "ts": "yesterday"}).encode(),
        json.dumps({"amount": 1, "ts": format_timestamp(clock.now())}).encode(),
        row("a", 1, clock, boom=True),
        row("a", 1, clock, bad_type=True),
    ]
    rows = [good[0], *poison[:4], good[1], *poison[4:], good[2]]
    src = ListSource(rows)
    runner = StreamRunner(
        engine, engine.catalog.data_sources["default.clicks"], SETTINGS, source=src
    )
    await drive(runner, src, len(rows))
    assert await window(engine, "a") == (3, 3)
    reasons = [d.reason for d in src.dead]
    assert reasons == [
        Reason.UNDECODABLE, Reason.UNDECODABLE, Reason.MISSING_TIMESTAMP, Reason.BAD_TIMESTAMP,
        Reason.MISSING_KEY, Reason.PROGRAM_ERROR, Reason.WRONG_TYPE,
    ]  # fmt: skip
    assert "boom" in src.dead[5].error
    assert runner.metrics.dead_by_reason == {"undecodable": 2, "missing-timestamp": 1,
        "bad-timestamp": 1, "missing-key": 1, "program-error": 1, "wrong-type": 1}  # fmt: skip
    text = render([runner.metrics]).decode()
    assert (
        'raptor_ingest_dead_letter_total{datasource="default.clicks",reason="wrong-type"} 1.0'
        in text
    )


async def test_redelivered_messages_are_not_counted_twice() -> None:
    """A crash after the state write and before the ack: the broker re-delivers, the state's
    checkpoint skips what was applied."""
    clock = FakeClock()
    engine = make_engine(clock)
    rows = [row("a", 1, clock) for _ in range(50)]
    src = ListSource(rows)
    src.fail_acks = 1_000_000  # every ack fails: the write lands, nothing is acknowledged
    ds = engine.catalog.data_sources["default.clicks"]
    first = StreamRunner(engine, ds, SETTINGS, source=src)
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    for _ in range(500):
        if first.metrics.errors.get("ack", 0) >= 2:
            break
        await asyncio.sleep(0.002)
    assert await window(engine, "a") == (50, 50)
    task.cancel()  # "kill -9": no drain, nothing acknowledged
    await asyncio.gather(task, return_exceptions=True)
    assert not src.acked

    src.fail_acks = 0
    src.redeliver()
    second = StreamRunner(engine, ds, SETTINGS, source=src)
    await drive(second, src, len(rows))
    assert await window(engine, "a") == (50, 50)
    assert second.metrics.replayed == 50
    assert second.metrics.applied == 0


async def test_nothing_is_acknowledged_while_state_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    engine = make_engine(clock)
    src = ListSource([row("a", 2, clock)])
    runner = StreamRunner(
        engine, engine.catalog.data_sources["default.clicks"], SETTINGS, source=src
    )
    real = engine.state.apply_checkpointed  # type: ignore[attr-defined]
    failures = {"left": 5}

    async def flaky(*args: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            assert not src.acked
            raise StateUnavailable("redis down")
        return await real(*args)

    monkeypatch.setattr(engine.state, "apply_checkpointed", flaky)
    await drive(runner, src, 1)
    assert failures["left"] == 0
    assert runner.metrics.errors["state"] == 5
    assert await window(engine, "a") == (2, 1)


async def test_dead_letters_can_go_to_a_local_file(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = make_engine(clock)
    src = ListSource([b"garbage", row("a", 1, clock)])
    settings = dataclasses.replace(SETTINGS, dead_letter_dir=tmp_path)
    runner = StreamRunner(
        engine, engine.catalog.data_sources["default.clicks"], settings, source=src
    )
    await drive(runner, src, 2)
    lines = (tmp_path / "default.clicks.ndjson").read_text().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["reason"] == "undecodable"
    assert doc["message"] == "garbage"
    assert doc["datasource"] == "default.clicks"
    assert doc["position"] == "0"
    assert not src.dead


async def test_broker_time_is_used_only_when_allowed() -> None:
    clock = FakeClock()
    engine = make_engine(clock, extra="    - {name: timestamp_fallback, value: broker}")
    processor = EventProcessor(
        engine, engine.catalog.data_sources["default.clicks"], broker_time_fallback=True
    )
    msg = Message(json.dumps({"user": "a", "amount": 3}).encode(), "p0", "1", clock.now_micros())
    (out,) = await processor.process([msg])
    assert out.dead is None
    assert out.broker_time_used
    assert len(out.mutations) == 1


async def test_inline_json_schemas_are_enforced() -> None:
    clock = FakeClock()
    schema = json.dumps(
        {"type": "object", "required": ["user"], "properties": {"amount": {"type": "integer"}}}
    )
    engine = make_engine(clock, schema=json.dumps(schema))
    processor = EventProcessor(engine, engine.catalog.data_sources["default.clicks"])
    ok = Message(row("a", 1, clock), "p0", "1")
    bad = Message(row("a", "many", clock), "p0", "2")  # type: ignore[arg-type]
    out_ok, out_bad = await processor.process([ok, bad])
    assert out_ok.dead is None
    assert out_bad.dead is not None
    assert out_bad.dead.reason == "schema"
    assert "many" in out_bad.dead.error


async def test_flat_entries_without_a_payload_are_rows_of_strings() -> None:
    clock = FakeClock()
    engine = make_engine(clock)
    processor = EventProcessor(engine, engine.catalog.data_sources["default.clicks"])
    flat = {"user": "a", "amount": "4", "ts": format_timestamp(clock.now())}
    (out,) = await processor.process([Message(flat, "p0", "1")])
    assert out.dead is not None
    assert out.dead.reason == "wrong-type"
    assert "spec.primitive" in out.dead.error


CONTEXT_MANIFESTS = """\
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {name: visits, namespace: default}
spec:
  kind: streaming
  config:
    - {name: kind, value: redis}
    - {name: url, value: "redis://unused"}
    - {name: stream, value: visits}
  keyFields: [user, site]
  timestampField: ts
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: seen, namespace: default}
spec:
  primitive: string
  freshness: 1h
  staleness: 24h
  keys: [user, site]
  dataSource: {name: visits}
  builder:
    code: |
      def handler(row, ctx) -> str:
          while row.get("spin"):
              pass
          return f"{ctx.fqn} {ctx.keys['user']}/{ctx.keys['site']} {ctx.timestamp.isoformat()}"
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: hits, namespace: default}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [user]
  dataSource: {name: visits}
  builder:
    aggr: [count]
    aggrGranularity: 1m
    code: |
      def handler(row, _) -> int:
          return 1
"""


async def test_each_event_gets_its_own_context_and_a_runaway_program_dead_letters_its_event() -> (
    None
):
    from raptor.engine.engine import EngineSettings

    clock = FakeClock()
    loaded = load_text(CONTEXT_MANIFESTS)
    catalog = build_catalog(loaded.assets)
    assert not catalog.errors, catalog.errors
    engine = Engine(
        MemoryStateStore(), clock=clock, catalog=catalog,
        settings=EngineSettings(program_hard_limit=0.2),
    )  # fmt: skip
    processor = EventProcessor(engine, catalog.data_sources["default.visits"])
    stamp = format_timestamp(clock.now())

    def msg(i: int, **extra: Any) -> Message:
        body = {"user": f"u{i}", "site": f"s{i}", "ts": stamp, **extra}
        return Message(json.dumps(body).encode(), "p0", str(i))

    outcomes = await processor.process([msg(0), msg(1, spin=True), msg(2), msg(3)])
    assert [o.dead is None for o in outcomes] == [True, False, True, True]
    dead = outcomes[1].dead
    assert dead is not None
    assert dead.reason == "program-error"
    assert dead.error == "feature default.seen: program exceeded its hard time limit of 0.2s"
    assert not outcomes[1].mutations  # all-or-nothing: the other feature's update is dropped
    for i in (0, 2, 3):
        written = {type(m).__name__: m for m in outcomes[i].mutations}
        assert set(written) == {"ValueWrite", "WindowAdd"}
        assert written["ValueWrite"].value == f"default.seen u{i}/s{i} {clock.now().isoformat()}"
    await engine.aclose()
