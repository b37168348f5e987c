"""Shared fixtures: a private Redis server per test session (see tests/servers.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servers import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the whole session (``.url``, ``.port``, ``.stop()``,
    ``.start()``). A test that stops it must start it again."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied (FLUSHALL) before the test."""
    import redis

    redis_server.start()
    with redis.Redis(host="127.0.0.1", port=redis_server.port) as client:
        client.flushall()
    return redis_server.url
