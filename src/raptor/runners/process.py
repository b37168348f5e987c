"""The runner process (``raptor runner``) and its small HTTP endpoint.

:func:`serve_runner` runs one :class:`~raptor.runners.loop.StreamRunner` until ``stop`` is set
(SIGTERM/SIGINT in the CLI), then drains it: the batch in flight is written, dead-lettered and
acknowledged before the process exits (``drain_timeout``), so a rolling update loses nothing
and re-delivers nothing.

:class:`HealthServer` answers three routes on ``--http HOST:PORT`` — a Deployment's probes and
Prometheus' scrape — with a few lines of asyncio rather than an ASGI stack (the runner image
needs no web framework; responses are tiny and the connection is closed after each):

* ``GET /healthz`` — 200 while the process runs (liveness);
* ``GET /readyz`` — 200 when every runner consumes and the state store answers ``ping``, else
  503 with a JSON body naming what is not ready (readiness);
* ``GET /metrics`` — the Prometheus text of :mod:`raptor.runners.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable, Iterable

import msgspec

from raptor.errors import RaptorError
from raptor.runners.loop import StreamRunner
from raptor.runners.metrics import CONTENT_TYPE, RunnerMetrics, render

__all__ = ["HealthServer", "serve_runner", "tune_gc"]

log = logging.getLogger("raptor.runners")

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthServer:
    """``/healthz``, ``/readyz``, ``/metrics`` over plain HTTP/1.1 (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: Callable[[], Awaitable[list[str]]],
        metrics: Callable[[], Iterable[RunnerMetrics]],
    ) -> None:
        self.host = host
        self.port = port
        self._ready = ready
        self._metrics = metrics
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0] if self._server.sockets else None
        if sock is not None:
            self.port = int(sock.getsockname()[1])

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = line.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) >= 2 else ("", "")
            status, ctype, body = await self._route(method, path)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        json = "application/json"
        if method not in ("GET", "HEAD"):
            return 405, json, b'{"error":{"code":"METHOD_NOT_ALLOWED","message":"use GET"}}'
        if path == "/healthz":
            return 200, json, b'{"status":"ok"}'
        if path == "/readyz":
            problems = await self._ready()
            if problems:
                return 503, json, msgspec.json.encode({"status": "not ready", "problems": problems})
            return 200, json, b'{"status":"ready"}'
        if path == "/metrics":
            return 200, CONTENT_TYPE, render(self._metrics())
        return 404, json, b'{"error":{"code":"NOT_FOUND","message":"no such route"}}'


def tune_gc() -> None:
    """Garbage-collector settings for a process that mostly consumes streams.

    Ingestion allocates a dozen container objects per event, nearly all acyclic (freed by
    reference counting at once). With the default thresholds a full collection (which walks
    every object of the process: the catalog, the client libraries...) ran every ~1,000 events
    and measured as half of the CPU. Objects alive at start-up are frozen (never scanned
    again), and the young generation is collected every 300,000 net allocations: more than the
    batches in flight keep alive (fetched, processed and being committed: three 10,000-event
    batches hold ~300,000 objects at most), so a collection runs when garbage cycles pile up —
    about 30 MB of them at most — not on every batch (at 50,000, collections that found
    nothing cost 10-15% of the CPU). Call once, after start-up, in a runner process."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_YOUNG_GC_THRESHOLD, 20, 100)


_YOUNG_GC_THRESHOLD = 300_000


async def readiness(runners: Iterable[StreamRunner], state: object) -> list[str]:
    """What keeps the runners from being ready (empty when ready)."""
    problems = [
        f"{r.data_source.fqn}: not consuming ({r.source.description})"
        for r in runners
        if not r.ready
    ]
    ping = getattr(state, "ping", None)
    if ping is not None:
        try:
            await ping()
        except RaptorError as exc:
            problems.append(f"state: {exc}")
    return problems


async def serve_runner(
    runner: StreamRunner, stop: asyncio.Event, http: tuple[str, int] | None = None
) -> int:
    """Run ``runner`` (and its HTTP endpoint) until ``stop``; drain; return an exit code."""
    server: HealthServer | None = None
    if http is not None:
        server = HealthServer(
            http[0],
            http[1],
            ready=lambda: readiness([runner], runner.engine.state),
            metrics=lambda: [runner.metrics],
        )
        try:
            await server.start()
        except OSError as exc:
            log.error("cannot serve HTTP on %s:%s: %s", http[0], http[1], exc)
            return 3
        log.info("runner HTTP on http://%s:%s (/healthz /readyz /metrics)", http[0], server.port)
    try:
        await runner.run(stop)
    finally:
        if server is not None:
            await server.close()
    return 0
