"""Crash test: ``kill -9`` of a ``raptor runner`` process mid-stream, restarted, several times;
the windowed features end with every event counted exactly once (Redis Streams → Redis state).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from brokers import streaming_manifests

from raptor.api.loading import load_text
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine
from raptor.state.redis import RedisStateStore
from servers import free_port

pytestmark = pytest.mark.integration

GROUP = "raptor.default.clicks"


def metric(port: int, name: str) -> float:
    """One sample of the runner's /metrics (0 when it is not up yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def start_runner(assets: Path, redis_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "raptor", "runner", "--data-source", "default/clicks", str(assets),
        "--state", redis_url, "--http", f"127.0.0.1:{port}", "--consumer", "crash-runner",
        "--batch-size", "400", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def produce(client: redis.Redis, n: int, start: int) -> None:
    ts = datetime.now(UTC).isoformat()
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + n):
        row = {"user": f"u{i % 7}", "amount": i % 13, "ts": ts}
        pipe.xadd("crash", {"data": json.dumps(row)})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


async def read_windows(manifests: str, url: str, users: list[str]) -> dict[str, tuple[int, int]]:
    store = RedisStateStore.from_url(url)
    engine = Engine(store, catalog=build_catalog(load_text(manifests).assets))
    try:
        out = {}
        for user in users:
            count = (await engine.get("clicks-amount+count", {"user": user})).value
            total = (await engine.get("clicks-amount+sum", {"user": user})).value
            out[user] = (count, total)
        return out
    finally:
        await engine.aclose()
        await store.close()


def test_kill_9_mid_stream_then_restart_counts_every_event_once(
    redis_url: str, tmp_path: Path
) -> None:
    manifests = streaming_manifests({"kind": "redis", "url": redis_url, "stream": "crash"})
    assets = tmp_path / "assets.yaml"
    assets.write_text(manifests)
    client = redis.Redis.from_url(redis_url)
    log = tmp_path / "runner.log"
    total = 0
    produce(client, 40_000, 0)
    total += 40_000
    port = free_port()
    kills = 0
    for round_ in range(3):
        proc = start_runner(assets, redis_url, port, log)
        try:
            target = 4_000 * (round_ + 1)
            deadline = time.monotonic() + 60
            while metric(port, "raptor_ingest_events_total") < target:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "runner made no progress"
                time.sleep(0.02)
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: a batch is in flight
            proc.wait(10)
        kills += 1
        produce(client, 5_000, total)  # traffic goes on while it is down
        total += 5_000

    proc = start_runner(assets, redis_url, port, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            groups = {g["name"]: g for g in client.xinfo_groups("crash")}
            g = groups.get(GROUP.encode()) or groups.get(GROUP)
            if g is not None and g["lag"] == 0 and g["pending"] == 0:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"not drained: {g}"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful this time
        assert proc.wait(20) == 0, log.read_text()[-3000:]
    assert kills == 3

    expected: dict[str, list[int]] = {}
    for i in range(total):
        expected.setdefault(f"u{i % 7}", []).append(i % 13)
    counts = asyncio.run(read_windows(manifests, redis_url, sorted(expected)))
    for user, amounts in expected.items():
        assert counts[user] == (len(amounts), sum(amounts)), user
    client.close()
