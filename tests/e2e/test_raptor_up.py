"""``raptor up`` as a user runs it: a subprocess on free ports, driven over REST and gRPC."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "card-transactions"

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Up:
    def __init__(self, folder: Path, *extra: str) -> None:
        self.http = free_port()
        self.grpc = free_port()
        self.url = f"http://127.0.0.1:{self.http}"
        self.log = folder.parent / "up.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "raptor",
                "up",
                str(folder),
                "--http",
                f"127.0.0.1:{self.http}",
                "--grpc",
                f"127.0.0.1:{self.grpc}",
                *extra,
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=folder.parent,  # dead letters and other local files land in the test's folder
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"raptor up exited: {self.log.read_text()}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"raptor up did not start: {self.log.read_text()}")

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text()

    def stop(self) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode


@pytest.fixture(params=["memory", "redis", "memory-uvicorn"])
def up(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Up]:
    """``raptor up`` on the example, on each state backend (a private redis-server for Redis),
    with the default REST server (granian) and with ``--http-server uvicorn``."""
    folder = tmp_path / "assets"
    shutil.copytree(EXAMPLE, folder)
    extra: tuple[str, ...] = ()
    if request.param == "redis":
        extra = ("--state", request.getfixturevalue("redis_url"))
    if request.param == "memory-uvicorn":
        extra = ("--http-server", "uvicorn")
    server = Up(folder, *extra)
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, server.output()


def push(up: Up, rows: list[dict[str, object]]) -> httpx.Response:
    return up.client.post("/api/v1alpha1/datasources/default/transactions/rows", json=rows)


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_example_serves_pushed_and_derived_features(up: Up) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "card_id": "c1",
            "amount": 100.0,
            "merchant": "books",
            "timestamp": (now - timedelta(minutes=5)).isoformat(),
        },
        {
            "card_id": "c1",
            "amount": 450.5,
            "merchant": "airline",
            "timestamp": (now - timedelta(minutes=2)).isoformat(),
        },
        {
            "card_id": "c2",
            "amount": 3.0,
            "merchant": "cafe",
            "timestamp": (now - timedelta(minutes=1)).isoformat(),
        },
    ]
    res = push(up, rows)
    assert res.status_code == 200, res.text
    get = up.client.get
    assert (
        get("/api/v1alpha1/features/spend+sum", params={"card_id": "c1"}).json()["value"] == 550.5
    )
    assert (
        get("/api/v1alpha1/features/spend+count", params={"keys.card_id": "c1"}).json()["value"]
        == 2
    )
    assert get("/api/v1alpha1/features/spend+max", params={"card_id": "c2"}).json()["value"] == 3.0
    last = get("/api/v1alpha1/features/last-merchant", params={"card_id": "c1"}).json()
    prev = get("/api/v1alpha1/features/last-merchant@-1", params={"card_id": "c1"}).json()
    assert (last["value"], prev["value"]) == ("airline", "books")
    assert (
        get("/api/v1alpha1/features/big-spender", params={"card_id": "c1"}).json()["value"] is True
    )
    assert (
        get("/api/v1alpha1/features/big-spender", params={"card_id": "c2"}).json()["value"] is False
    )
    hour = get("/api/v1alpha1/features/hour-of-day").json()
    assert (
        hour["value"] == datetime.now(UTC).hour
        or hour["value"] == (datetime.now(UTC).hour - 1) % 24
    )

    # raptor get, the CLI client
    cli = subprocess.run(
        [sys.executable, "-m", "raptor", "get", "spend+sum", "card_id=c1", "--url", up.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "550.5" in cli.stdout
    assert "fresh:     true" in cli.stdout


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(up: Up) -> None:
    get = up.client.get
    cases = [
        (get("/api/v1alpha1/features/spend+sum!!", params={"card_id": "c1"}), 400),
        (get("/api/v1alpha1/features/spend+sum"), 400),  # missing key
        (get("/api/v1alpha1/features/nope", params={"card_id": "c1"}), 404),
        (
            up.client.put(
                "/api/v1alpha1/features/last-merchant", json={"keys": {"card_id": "c1"}, "value": 5}
            ),
            422,
        ),
        (
            up.client.post(
                "/api/v1alpha1/datasources/default/transactions/rows",
                content=b"[" + b'{"card_id": "c1"},' * 200_000 + b"{}]",
                headers={"content-type": "application/json"},
            ),
            413,
        ),
        (push(up, [{"card_id": "c1", "amount": 1.0, "merchant": "x"}]), 422),  # no timestamp
    ]
    for res, status in cases:
        assert res.status_code == status, res.text
        assert res.json()["error"]["message"]
    assert get("/healthz").status_code == 200
    assert get("/readyz").status_code == 200


def test_manifests_hot_reload(up: Up, tmp_path: Path) -> None:
    folder = tmp_path / "assets"
    # add
    (folder / "extra.yaml").write_text(
        (folder / "features.yaml")
        .read_text()
        .split("---")[-1]
        .replace("hour-of-day", "minute-of-hour")
        .replace("ctx.timestamp.hour", "ctx.timestamp.minute")
    )
    assert wait_for(
        lambda: up.client.get("/api/v1alpha1/features/minute-of-hour").status_code == 200
    )
    # edit: the descriptor shows the new freshness
    text = (folder / "extra.yaml").read_text().replace("freshness: 1m", "freshness: 2m")
    (folder / "extra.yaml").write_text(text)
    assert wait_for(
        lambda: "2m" in json.dumps(up.client.get("/api/v1alpha1/descriptors/minute-of-hour").json())
    )
    # a broken edit is reported and the previous version keeps serving
    (folder / "extra.yaml").write_text(text.replace("-> int", "-> str"))
    assert wait_for(lambda: "UpdateRejected" in up.output() or "error:" in up.output())
    assert up.client.get("/api/v1alpha1/features/minute-of-hour").status_code == 200
    # delete
    (folder / "extra.yaml").unlink()
    assert wait_for(
        lambda: up.client.get("/api/v1alpha1/features/minute-of-hour").status_code == 404
    )
    descriptors = up.client.get("/api/v1alpha1/descriptors").json()
    assert "default.spend" in json.dumps(descriptors)


def test_grpc_accessor_serves_the_same_values(up: Up) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from raptor.api.proto.core.v1alpha1 import api_pb2, api_pb2_grpc

    now = datetime.now(UTC)
    row = {"card_id": "g1", "amount": 12.5, "merchant": "fuel", "timestamp": now.isoformat()}
    assert push(up, [row, {**row, "amount": 7.5}]).status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{up.grpc}") as channel:
        stub = api_pb2_grpc.EngineServiceStub(channel)
        res = stub.Get(api_pb2.GetRequest(uuid="u-1", selector="spend+sum", keys={"card_id": "g1"}))
        assert res.uuid == "u-1"
        assert res.value.value.scalar_value.float_value == 20.0
        assert res.value.fresh
        with pytest.raises(grpc.RpcError) as err:
            stub.Get(api_pb2.GetRequest(selector="nope", keys={"card_id": "g1"}))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            stub.Get(api_pb2.GetRequest(selector="spend+sum"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_example_generator_pushes_every_row(up: Up) -> None:
    res = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "generate.py"),
            "--url",
            up.url,
            "--rows",
            "300",
            "--cards",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "pushed 300" in res.stdout
    batch = up.client.post(
        "/api/v1alpha1/features:batchGet",
        json={"selectors": ["spend+count"], "entities": [{"card_id": f"c{i}"} for i in range(4)]},
    ).json()
    counts = [row["values"]["default.spend+count"]["value"] for row in batch["results"]]
    assert sum(counts) == 300


STREAM_ASSETS = """\
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata:
  name: clicks
spec:
  kind: streaming
  config:
    - name: kind
      value: redis
    - name: url
      value: {url}
    - name: stream
      value: clicks
  keyFields: [user]
  timestampField: ts
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata:
  name: clicks
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [user]
  dataSource:
    name: clicks
  builder:
    aggr: [count]
    code: |
      def handler(row, ctx) -> int:
          return 1
"""


def test_streaming_source_is_consumed_in_process(tmp_path: Path, redis_url: str) -> None:
    """A Redis Streams DataSource under ``raptor up``: events are counted once, the in-process
    runner's metrics are on the server's /metrics."""
    import redis

    folder = tmp_path / "assets"
    folder.mkdir()
    (folder / "clicks.yaml").write_text(STREAM_ASSETS.format(url=redis_url))
    client = redis.Redis.from_url(redis_url)
    now = datetime.now(UTC)
    for i in range(25):
        row = {"user": f"u{i % 5}", "ts": (now - timedelta(seconds=i)).isoformat()}
        client.xadd("clicks", {"data": json.dumps(row)})
    client.xadd("clicks", {"data": "not json"})
    up = Up(folder, "--state", redis_url)
    try:

        def counted() -> bool:
            res = up.client.get("/api/v1alpha1/features/clicks+count", params={"user": "u0"})
            return res.status_code == 200 and res.json()["value"] == 5

        assert wait_for(counted, 20), up.output()
        metrics = up.client.get("/metrics").text
        assert "raptor_ingest_events_total" in metrics
        assert "raptor_ingest_dead_letter_total" in metrics
        assert "raptor_feature_reads" in metrics
    finally:
        assert up.stop() == 0, up.output()
        client.close()


@pytest.mark.parametrize("flag", ["--http", "--grpc"])
def test_a_busy_port_is_a_clear_error(tmp_path: Path, flag: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--grpc" if flag == "--http" else "--http"
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "raptor",
                "up",
                str(EXAMPLE),
                flag,
                f"127.0.0.1:{port}",
                other,
                f"127.0.0.1:{free_port()}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
    assert res.returncode == 3
    assert "Traceback" not in res.stderr
    assert "backtrace" not in res.stderr.lower()  # granian's own report of a taken port
    assert f"127.0.0.1:{port}" in res.stderr


def test_an_unknown_http_server_is_a_clear_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "raptor", "up", str(EXAMPLE), "--no-runners"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "RAPTOR_HTTP_SERVER": "tornado"},
        check=False,
    )
    assert res.returncode == 2
    assert "'tornado' is not one of granian, uvicorn" in res.stderr


def test_max_body_sets_the_request_body_limit(tmp_path: Path) -> None:
    folder = tmp_path / "assets"
    shutil.copytree(EXAMPLE, folder)
    up = Up(folder, "--max-body", "2KiB", "--no-runners")
    try:
        now = datetime.now(UTC).isoformat()
        row = {"card_id": "m1", "amount": 1.0, "merchant": "x", "timestamp": now}
        assert push(up, [row]).status_code == 200
        res = push(up, [row] * 40)  # ~3 KB
        assert res.status_code == 413, res.text
        assert "2048" in res.json()["error"]["message"]
    finally:
        assert up.stop() == 0, up.output()
