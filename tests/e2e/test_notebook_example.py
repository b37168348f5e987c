"""The notebook example end to end: data sources → features → model → export → served values
equal replayed values.

1. The example runs as a user runs it (``main(out)``) and its folder passes ``raptor validate``.
2. The exported folder is loaded by the local control plane into the real engine (fake clock);
   the training rows are ingested as production ingests them, each at its event time; every
   windowed function, the current and previous versions, the derived feature and the label are
   read at sampled times and equal the SDK's replay at those times.
3. ``raptor up`` serves the same folder over HTTP (real clock): rows stamped up to now are
   pushed through the REST push API and the values read back over REST equal the replay.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raptor.api.timeutil import format_timestamp, parse_timestamp, to_micros
from raptor.cli.validate import validate_paths
from raptor.control.local import LocalControlPlane
from raptor.engine.engine import Engine
from raptor.engine.ingest import ingest_rows
from raptor.sdk.registry import Registry
from raptor.state.memory import MemoryStateStore
from raptor.testing import FakeClock

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "notebook-churn" / "churn.py"
CUSTOMERS = ["c000", "c001", "c004", "c013", "c059", "nobody"]
SELECTORS = {
    "spend+sum": "default.spend+sum",
    "spend+count": "default.spend+count",
    "spend+avg": "default.spend+avg",
    "spend+max": "default.spend+max",
    "last_merchant": "default.last_merchant",
    "last_merchant@-1": "default.last_merchant@-1",
    "last_merchant@-2": "default.last_merchant@-2",
    "ticket_ratio": "default.ticket_ratio",
    "churned": "default.churned",
}


@pytest.fixture
def example() -> Iterator[ModuleType]:
    with Registry():
        spec = importlib.util.spec_from_file_location("churn_example", EXAMPLE)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def _norm(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def _same(a: Any, b: Any) -> bool:
    a, b = _norm(a), _norm(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def _replayed(example: ModuleType, times: list[datetime]) -> dict[tuple[datetime, str, str], Any]:
    at = pd.DataFrame(
        {
            "timestamp": pd.to_datetime([t for t in times for _ in CUSTOMERS], utc=True),
            "customer_id": CUSTOMERS * len(times),
        }
    )
    out: dict[tuple[datetime, str, str], Any] = {}
    for f in (example.spend, example.last_merchant, example.ticket_ratio, example.churned):
        frame = f.replay(at=at)
        for sel, col in SELECTORS.items():
            if col in frame.columns:
                for i, value in enumerate(frame[col].tolist()):
                    out[(times[i // len(CUSTOMERS)], CUSTOMERS[i % len(CUSTOMERS)], sel)] = value
    return out


def _rows(example: ModuleType) -> list[tuple[str, dict[str, Any]]]:
    """Both sources' rows as JSON objects, merged in event-time order."""
    out: list[tuple[int, int, str, dict[str, Any]]] = []
    for name, frame in (
        ("default.payments", example.Payments.raptor.frame()),
        ("default.subscriptions", example.Subscriptions.raptor.frame()),
    ):
        for i, rec in enumerate(frame.to_dict("records")):
            row = {k: (format_timestamp(v) if k == "ts" else v) for k, v in rec.items()}
            out.append((to_micros(rec["ts"]), i, name, row))
    out.sort(key=lambda x: (x[0], x[2], x[1]))
    return [(name, row) for _, _, name, row in out]


def test_example_exports_a_folder_that_validates(example: ModuleType, tmp_path: Path) -> None:
    folder = example.main(str(tmp_path / "out"))
    errors, _, _, assets = validate_paths([folder])
    assert errors == []
    kinds = sorted(type(a).__name__ for a in assets)
    assert kinds == ["DataSourceDef"] * 2 + ["FeatureDef"] * 4 + ["ModelDef"]
    assert (folder / "models" / "churn-model" / "model.joblib").is_file()


def test_exported_folder_served_by_the_engine_equals_replay(
    example: ModuleType, tmp_path: Path
) -> None:
    folder = example.main(str(tmp_path / "out"))
    rows = _rows(example)
    start = parse_timestamp(rows[0][1]["ts"])
    times = sorted(
        {start + timedelta(hours=h, minutes=17 * h % 60) for h in range(1, 80, 5)}
        | {parse_timestamp(rows[len(rows) // 2][1]["ts"]), parse_timestamp(rows[-1][1]["ts"])}
    )
    want = _replayed(example, times)

    async def serve() -> list[tuple[datetime, str, str, Any]]:
        clock = FakeClock(start)
        engine = Engine(MemoryStateStore(), clock=clock)
        control = LocalControlPlane(engine, [folder])
        report = control.reconcile()
        assert not report.errors, report.errors
        got = []
        pending = list(rows)
        try:
            for t in times:
                while pending and parse_timestamp(pending[0][1]["ts"]) <= t:
                    name, row = pending.pop(0)
                    clock.set(parse_timestamp(row["ts"]))
                    await ingest_rows(engine, name, [row])
                clock.set(t)
                for c in CUSTOMERS:
                    for sel in SELECTORS:
                        v = await engine.get(sel, {"customer_id": c})
                        got.append((t, c, sel, v.value))
        finally:
            await engine.aclose()
        return got

    served = asyncio.run(serve())
    assert len(served) == len(times) * len(CUSTOMERS) * len(SELECTORS)
    non_null = 0
    for t, c, sel, value in served:
        expected = want[(t, c, sel)]
        assert _same(value, expected), f"{sel} {c} at {t}: served {value!r}, replay {expected!r}"
        non_null += value is not None
    assert non_null > len(served) // 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_raptor_up_serves_the_replayed_values_over_rest(
    example: ModuleType, tmp_path: Path
) -> None:
    httpx = pytest.importorskip("httpx")
    end = datetime.now(UTC) - timedelta(seconds=5)
    example.Payments.raptor.training_data = example.make_payments(end=end)
    example.Subscriptions.raptor.training_data = example.make_subscriptions(end=end)
    folder = example.main(str(tmp_path / "out"))
    http, grpc = _free_port(), _free_port()
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raptor",
            "up",
            str(folder),
            "--no-watch",
            "--http",
            f"127.0.0.1:{http}",
            "--grpc",
            f"127.0.0.1:{grpc}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=10)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "raptor up did not start"
            time.sleep(0.1)
        rows = _rows(example)
        for name in ("payments", "subscriptions"):
            batch = [row for n, row in rows if n == f"default.{name}"]
            for i in range(0, len(batch), 500):
                r = client.post(
                    f"/api/v1alpha1/datasources/default/{name}/rows", json=batch[i : i + 500]
                )
                assert r.status_code < 300, r.text
        checked = 0
        for sel in (
            "spend+sum",
            "spend+count",
            "spend+avg",
            "spend+max",
            "ticket_ratio",
            "last_merchant",
            "churned",
        ):
            for c in CUSTOMERS:
                r = client.get(f"/api/v1alpha1/features/{sel}", params={"customer_id": c})
                assert r.status_code == 200, r.text
                body = r.json()
                windowed = sel.startswith("spend") or sel == "ticket_ratio"
                when = (
                    parse_timestamp(body["timestamp"])
                    if windowed and body["timestamp"]
                    else datetime.now(UTC)
                )
                expected = _replayed(example, [when])[(when, c, sel)]
                assert _same(body["value"], expected), (
                    f"{sel} {c}: served {body!r}, replay {expected!r}"
                )
                checked += body["value"] is not None
        assert checked > 10
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
