"""``raptor.server.http_server``: both REST servers of ``raptor up``, for real on free ports.

Each kind (granian embedded in the loop, uvicorn) must: serve the ASGI app, refuse a taken port
with one clear line (not a Rust backtrace nor a process exit), and on ``stop()`` answer the
request in flight, then refuse new connections.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

from raptor.server.http_server import (
    HTTP_SERVERS,
    HttpServerError,
    available_http_server,
    create_http_server,
)

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SlowApp:
    """Answers ``/slow`` after ``delay`` seconds and anything else at once, with the path."""

    def __init__(self, delay: float = 0.5) -> None:
        self.delay = delay
        self.started = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/slow":
            self.started.set()
            await asyncio.sleep(self.delay)
        body = scope["path"].encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def test_granian_is_the_default_when_installed() -> None:
    assert available_http_server() == "granian"


@pytest.mark.parametrize("kind", HTTP_SERVERS)
async def test_serves_then_stops_after_the_request_in_flight(kind: Any) -> None:
    app = SlowApp()
    port = free_port()
    server = create_http_server(app, "127.0.0.1", port, kind)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert (await client.get("/hello")).text == "/hello"
            in_flight = asyncio.create_task(client.get("/slow"))
            await asyncio.wait_for(app.started.wait(), 5)
            await server.stop()  # stops accepting; /slow, already in flight, is answered
            res = await asyncio.wait_for(in_flight, 5)
            assert (res.status_code, res.text) == (200, "/slow")
        async with httpx.AsyncClient(timeout=2) as fresh:
            with pytest.raises(httpx.ConnectError):
                await fresh.get(f"http://127.0.0.1:{port}/hello")
    finally:
        await server.stop()


@pytest.mark.parametrize("kind", HTTP_SERVERS)
async def test_a_taken_port_is_one_clear_error(kind: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = create_http_server(SlowApp(), "127.0.0.1", port, kind)
        with pytest.raises(HttpServerError) as err:
            await server.start()
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message
    assert "in use" in message.lower()
    assert "\n" not in message


@pytest.mark.parametrize("kind", HTTP_SERVERS)
async def test_a_host_name_is_resolved(kind: Any) -> None:
    port = free_port()
    server = create_http_server(SlowApp(), "localhost", port, kind)
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"http://localhost:{port}/x")).text == "/x"
    finally:
        await server.stop()


async def test_an_unknown_host_is_one_clear_error() -> None:
    server = create_http_server(SlowApp(), "no-such-host.invalid", free_port(), "granian")
    with pytest.raises(HttpServerError, match=r"no-such-host\.invalid"):
        await server.start()
