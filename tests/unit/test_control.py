"""The local control plane and the reconcile planner."""

from __future__ import annotations

import asyncio
from pathlib import Path

from raptor.api.assets import DataSourceDef
from raptor.control.local import LocalControlPlane
from raptor.control.planner import plan
from raptor.engine.engine import Engine
from raptor.state.memory import MemoryStateStore

FEATURE = """\
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata:
  name: {name}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [id]
  builder:
    code: |
      def handler(row, ctx) -> int:
          return {value}
"""


def src(name: str, kind: str = "push") -> DataSourceDef:
    return DataSourceDef(fqn=f"default.{name}", namespace="default", name=name, kind=kind)  # type: ignore[arg-type]


def test_planner_sorts_assets_into_actions() -> None:
    running = {("DataSource", "default.a"): src("a"), ("DataSource", "default.b"): src("b")}
    desired = {("DataSource", "default.b"): src("b", "rest"), ("DataSource", "default.c"): src("c")}
    p = plan(desired, running)
    assert p.create == (("DataSource", "default.c"),)
    assert p.update == (("DataSource", "default.b"),)
    assert p.delete == (("DataSource", "default.a"),)
    assert not p.unchanged


def test_planner_keeps_running_assets_whose_new_version_is_invalid() -> None:
    running = {("DataSource", "default.a"): src("a")}
    p = plan({}, running, invalid=frozenset({("DataSource", "default.a")}))
    assert p.keep == (("DataSource", "default.a"),)
    assert not p.delete


async def test_reconcile_loads_edits_and_deletes(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(FEATURE.format(name="f", value=1))
    engine = Engine(MemoryStateStore())
    control = LocalControlPlane(engine, [tmp_path])
    report = control.reconcile()
    assert report.plan.create == (("Feature", "default.f"),)
    assert (await engine.get("f", {"id": "x"})).value == 1

    (tmp_path / "g.yaml").write_text(FEATURE.format(name="g", value=2))
    report = control.reconcile()
    assert report.plan.create == (("Feature", "default.g"),)
    assert report.plan.unchanged == (("Feature", "default.f"),)

    (tmp_path / "f.yaml").unlink()
    report = control.reconcile()
    assert report.plan.delete == (("Feature", "default.f"),)
    assert "Feature/default.f" not in control.statuses()
    await engine.aclose()


async def test_a_bad_edit_keeps_the_previous_version_serving(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(FEATURE.format(name="f", value=1))
    engine = Engine(MemoryStateStore())
    control = LocalControlPlane(engine, [tmp_path])
    control.reconcile()

    # A program error: the feature's new version is rejected, the old one keeps running.
    path.write_text(FEATURE.format(name="f", value="undefined_name + ("))
    report = control.reconcile()
    assert report.plan.keep == (("Feature", "default.f"),)
    assert any("default.f" in e or "f.yaml" in e for e in report.errors)
    status = control.statuses()["Feature/default.f"]
    assert status.ready
    assert status.reason == "UpdateRejected"
    assert (await engine.get("f", {"id": "x"})).value == 1

    # Broken YAML: the file's assets keep running too.
    path.write_text("apiVersion: k8s.raptor.ml/v1alpha1\nkind: Feature\n  bad: [\n")
    report = control.reconcile()
    assert report.errors
    assert engine.catalog.features.get("default.f") is not None

    # A good edit is taken.
    path.write_text(FEATURE.format(name="f", value=3))
    report = control.reconcile()
    assert report.plan.update == (("Feature", "default.f"),)
    assert control.statuses()["Feature/default.f"].reason == "Ready"
    # (the computed value 1 is still fresh in state; a new entity computes with the new code)
    assert (await engine.get("f", {"id": "y"})).value == 3
    await engine.aclose()


async def test_watch_reconciles_on_file_changes(tmp_path: Path) -> None:
    engine = Engine(MemoryStateStore())
    control = LocalControlPlane(engine, [tmp_path])
    control.reconcile()
    stop = asyncio.Event()
    task = asyncio.create_task(control.watch(stop, debounce_ms=50))
    await asyncio.sleep(0.3)
    (tmp_path / "f.yaml").write_text(FEATURE.format(name="f", value=5))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if "default.f" in engine.catalog.features:
            break
    assert "default.f" in engine.catalog.features
    stop.set()
    await asyncio.wait_for(task, 5)
    await engine.aclose()
