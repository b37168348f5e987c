"""The HTTP server that runs the REST app inside ``raptor up``'s event loop: granian or uvicorn.

Both serve the same ASGI app (:func:`raptor.server.rest.create_app`) on the loop that also runs
the gRPC server, the control plane and the stream runners; they differ in where HTTP itself is
handled:

* **granian** (the default when installed): HTTP/1.1 and h2c are parsed and written by a Rust
  thread outside the GIL, and requests reach the loop in arrival order. Measured on the
  batchGet benchmark (``bench/bench_rest.py --server``, BENCHMARKS.md) it has the same
  throughput as uvicorn with a much shorter tail: p99 1.5x the median against 2.2x. Granian
  labels this in-loop ("embedded") mode experimental.
* **uvicorn** with httptools: everything in Python on the loop. The fallback, and the choice
  to make (``raptor up --http-server uvicorn``) if the embedded granian misbehaves.

:func:`create_http_server` returns an :class:`HttpServer` whatever the kind: ``start()``
returns once the port accepts connections or raises :class:`HttpServerError` saying why (the
port is taken, the address cannot be bound); ``stop()`` stops accepting and returns once the
requests in flight have been answered. Neither installs signal handlers: ``raptor up`` owns
SIGINT/SIGTERM. This module is the only importer of granian and uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any, Literal, Protocol

__all__ = [
    "HTTP_SERVERS",
    "HttpServer",
    "HttpServerError",
    "available_http_server",
    "create_http_server",
]

HttpServerKind = Literal["granian", "uvicorn"]
HTTP_SERVERS: tuple[HttpServerKind, ...] = ("granian", "uvicorn")

_START_TIMEOUT = 10.0


class HttpServerError(RuntimeError):
    """The HTTP server could not start (the message says why, e.g. the address is in use)."""


class HttpServer(Protocol):
    kind: HttpServerKind

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def available_http_server() -> HttpServerKind | None:
    """The preferred installed server: granian, else uvicorn; None when neither is."""
    for kind, module in (("granian", "granian"), ("uvicorn", "uvicorn")):
        try:
            __import__(module)
        except ImportError:
            continue
        return kind  # type: ignore[return-value]
    return None


def create_http_server(app: Any, host: str, port: int, kind: HttpServerKind) -> HttpServer:
    """A server of ``kind`` for the ASGI ``app`` on ``host:port`` (not started)."""
    if kind == "granian":
        return _Granian(app, host, port)
    return _Uvicorn(app, host, port)


async def _bindable_ip(host: str, port: int) -> str:
    """The IP address ``host`` resolves to (granian binds IP addresses only), after binding
    and releasing it once so that a taken port is reported in one clear line (granian reports
    it with a Rust backtrace, uvicorn by exiting the process)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise HttpServerError(f"cannot serve REST on {host}:{port}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            raise HttpServerError(f"cannot serve REST on {host}:{port}: {exc.strerror}") from None
    ip = str(address[0])
    return ip


async def _accepting(host: str, port: int, task: asyncio.Task[Any]) -> None:
    """Return once ``host:port`` accepts a connection; raise if ``task`` (the server) ends or
    nothing listens within the start timeout."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_TIMEOUT
    while True:
        if task.done():
            exc = None if task.cancelled() else task.exception()
            raise HttpServerError(f"cannot serve REST on {host}:{port}: {_first_line(exc)}")
        try:
            _, writer = await asyncio.open_connection(target, port)
        except OSError:
            if loop.time() > deadline:
                raise HttpServerError(
                    f"REST server on {host}:{port} did not start within {_START_TIMEOUT:g} s"
                ) from None
            await asyncio.sleep(0.01)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0] if text else "the server stopped"


class _Granian:
    """granian's embedded server: one Rust I/O thread, the app on the running loop."""

    kind: HttpServerKind = "granian"

    def __init__(self, app: Any, host: str, port: int) -> None:
        # granian warns at every start that the embedded mode is experimental (said above and
        # in the docs); its own errors still reach the log
        logging.getLogger("granian").setLevel(logging.ERROR)
        logging.getLogger("_granian").setLevel(logging.ERROR)
        self.app, self.host, self.port = app, host, port
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from granian.constants import Interfaces
        from granian.server.embed import Server

        self._server = Server(
            self.app,
            address=await _bindable_ip(self.host, self.port),
            port=self.port,
            interface=Interfaces.ASGINL,  # no lifespan: raptor up owns start and stop
            websockets=False,
            backlog=1024,
            log_enabled=False,
        )
        self._task = asyncio.create_task(self._server.serve(), name="raptor-http")
        try:
            await _accepting(self.host, self.port, self._task)
        except HttpServerError:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._task is None:
            return
        if not self._task.done():
            self._server.stop()
        with contextlib.suppress(Exception):
            await self._task  # returns once the requests in flight are answered


class _Uvicorn:
    """uvicorn (httptools when installed) on the running loop."""

    kind: HttpServerKind = "uvicorn"

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        class QuietServer(uvicorn.Server):
            """uvicorn without its own signal handling: ``raptor up`` owns SIGINT/SIGTERM."""

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self.host, self.port = host, port
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=_uvicorn_protocol(),
        )
        self._server = QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await _bindable_ip(self.host, self.port)

        async def serve() -> None:
            try:
                await self._server.serve()
            except SystemExit:  # uvicorn exits the process when it cannot bind
                raise HttpServerError("uvicorn could not bind (see its message above)") from None

        self._task = asyncio.create_task(serve(), name="raptor-http")
        await _accepting(self.host, self.port, self._task)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task


def _uvicorn_protocol() -> str:
    """httptools (C parser) when installed, else uvicorn's pure-Python h11."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"
