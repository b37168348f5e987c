"""``raptor runner`` as a process (HTTP probes, metrics, graceful SIGTERM, exit codes) and the
in-process runners of ``raptor up`` following catalog changes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from brokers import streaming_manifests

from raptor.control.local import LocalControlPlane
from raptor.engine.engine import Engine
from raptor.errors import RaptorError
from raptor.runners.config import Secrets
from raptor.runners.loop import RunnerSettings
from raptor.runners.supervisor import RunnerSupervisor, run_runners
from raptor.state.memory import MemoryStateStore
from servers import free_port

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:  # not listening yet
        return 0, ""


def xadd(client: redis.Redis, stream: str, n: int, **extra: object) -> None:
    ts = datetime.now(UTC).isoformat()
    for _ in range(n):
        client.xadd(stream, {"data": json.dumps({"user": "u1", "amount": 1, "ts": ts, **extra})})


def test_the_runner_process_serves_probes_and_drains_on_sigterm(
    redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "assets.yaml").write_text(
        streaming_manifests({"kind": "redis", "url": redis_url, "stream": "proc"})
    )
    client = redis.Redis.from_url(redis_url)
    xadd(client, "proc", 100)
    xadd(client, "proc", 1, boom=1)
    port = free_port()
    cmd = [sys.executable, "-m", "raptor", "runner", "--data-source", "default/clicks",
           str(tmp_path), "--state", redis_url, "--http", f"127.0.0.1:{port}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            status, body = get(port, "/metrics") if proc.poll() is None else (0, "")
            if 'result="applied"} 100.0' in body:
                break
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        dead = 'raptor_ingest_dead_letter_total{datasource="default.clicks",reason="program-error"}'
        assert f"{dead} 1.0" in body
        assert "process_cpu_seconds_total" in body
        assert get(port, "/healthz")[0] == 200
        status, body = get(port, "/readyz")
        assert (status, json.loads(body)["status"]) == (200, "ready")
        assert get(port, "/nope")[0] == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, out
    assert "Raptor runner stopped." in out
    assert client.xpending("proc", "raptor.default.clicks")["pending"] == 0
    client.close()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--data-source", "default/nope"], 1, "DataSource default/nope"),
        (["--data-source", "oops"], 2, "NAMESPACE/NAME"),
        (["--data-source", "default/clicks", "--http", "nowhere"], 2, "HOST:PORT"),
    ],
)
def test_runner_usage_errors_are_one_line_messages(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    (tmp_path / "assets.yaml").write_text(
        streaming_manifests({"kind": "redis", "url": "redis://127.0.0.1:1", "stream": "s"})
    )
    run = subprocess.run(
        [sys.executable, "-m", "raptor", "runner", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RAPTOR_STATE": ""},
    )
    assert run.returncode == code, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr


async def test_in_process_runners_follow_the_catalog(redis_url: str, tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    manifest = assets / "clicks.yaml"
    manifest.write_text(streaming_manifests({"kind": "redis", "url": redis_url, "stream": "up"}))
    client = redis.Redis.from_url(redis_url)
    engine = Engine(MemoryStateStore())
    control = LocalControlPlane(engine, [assets])
    control.reconcile()
    settings = RunnerSettings(
        consumer="up", fetch_timeout=0.05, dead_letter_dir=tmp_path / "dead-letters",
        secrets=Secrets(secrets_dir=None),
    )  # fmt: skip
    sup = RunnerSupervisor(engine, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(run_runners(engine, control, stop, settings, supervisor=sup))

    async def window(fn: str) -> object:
        try:
            return (await engine.get(f"clicks-amount+{fn}", {"user": "u1"})).value
        except RaptorError:  # the feature is not deployed (any more)
            return None

    async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 15) -> None:
        async with asyncio.timeout(limit):
            while not await check():  # noqa: ASYNC110 (polling state, not an event)
                await asyncio.sleep(0.05)

    async def counted(n: int) -> bool:
        return await window("count") == n

    xadd(client, "up", 10)
    xadd(client, "up", 1, boom=1)
    await eventually(lambda: counted(10))
    assert set(sup.running) == {"default.clicks"}
    first = sup.running["default.clicks"].runner
    dead = (tmp_path / "dead-letters" / "default.clicks.ndjson").read_text().splitlines()
    assert [json.loads(d)["reason"] for d in dead] == ["program-error"]

    async def restarted() -> bool:
        r = sup.running.get("default.clicks")
        return r is not None and r.runner is not first

    async def summed(total: int) -> bool:
        return await window("sum") == total

    async def stopped() -> bool:
        return not sup.running

    # a changed feature restarts the runner with the new program
    manifest.write_text(
        manifest.read_text().replace('return row["amount"]', 'return row["amount"] * 10')
    )
    control.reconcile()
    await eventually(restarted)
    xadd(client, "up", 2)
    await eventually(lambda: summed(10 + 20))

    # the DataSource removed: its runner stops
    manifest.write_text("")
    control.reconcile()
    await eventually(stopped)
    stop.set()
    await asyncio.wait_for(task, 15)
    assert b"raptor_ingest_messages_total" in sup.metrics_text()
    client.close()
