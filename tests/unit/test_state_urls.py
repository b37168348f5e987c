"""State URLs: parsing (pure) and which store ``open_state`` builds."""

from __future__ import annotations

import sys

import pytest

from raptor.state.memory import MemoryStateStore
from raptor.state.urls import RedisTarget, open_state, parse_redis_url


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("redis://localhost", RedisTarget("standalone", (("localhost", 6379),))),
        (
            "rediss://u:p%40ss@r.example:6380/3",
            RedisTarget(
                "standalone", (("r.example", 6380),), tls=True, username="u", password="p@ss", db=3
            ),
        ),
        ("redis://:pw@h?db=2", RedisTarget("standalone", (("h", 6379),), password="pw", db=2)),
        ("redis://[::1]:7000", RedisTarget("standalone", (("::1", 7000),))),
        (
            "redis+sentinel://s1,s2:26380/mymaster/4",
            RedisTarget("sentinel", (("s1", 26379), ("s2", 26380)), service="mymaster", db=4),
        ),
        (
            "redis+sentinel://h/svc?sentinel_password=x",
            RedisTarget("sentinel", (("h", 26379),), service="svc", sentinel_password="x"),
        ),
        ("redis+cluster://a:7000,b:7001", RedisTarget("cluster", (("a", 7000), ("b", 7001)))),
        ("redis://a:7000,b:7001?cluster=true", RedisTarget("cluster", (("a", 7000), ("b", 7001)))),
        ("rediss+cluster://a", RedisTarget("cluster", (("a", 6379),), tls=True)),
        ("unix:///run/redis.sock?db=1", RedisTarget("unix", path="/run/redis.sock", db=1)),
        ("redis://h?prefix=staging", RedisTarget("standalone", (("h", 6379),), prefix="staging")),
        (
            "rediss://h?ssl_cert_reqs=none&ssl_check_hostname=false",
            RedisTarget(
                "standalone",
                (("h", 6379),),
                tls=True,
                ssl={"ssl_cert_reqs": "none", "ssl_check_hostname": False},
            ),
        ),
    ],
)
def test_redis_urls_parse_to_their_target(url: str, want: RedisTarget) -> None:
    assert parse_redis_url(url) == want


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "unknown scheme 'http'"),
        ("redis:/h", "unknown scheme"),
        ("redis://", "missing host"),
        ("redis://h:99999", "bad port"),
        ("redis://h:x", "bad port"),
        ("redis://a,b", "several hosts"),
        ("redis://h/1/2", "unexpected path"),
        ("redis://h/x", "db must be"),
        ("redis://h?bogus=1", "unknown option(s) bogus"),
        ("redis://h?cluster=maybe", "cluster must be"),
        ("redis+sentinel://h", "missing Sentinel service name"),
        ("redis+cluster://h/2", "only has db 0"),
        ("redis://h?ssl_cert_reqs=none", "need a TLS scheme"),
        ("unix://host/sock", "no host"),
        ("redis+sentinel://h/svc?cluster=true", "cannot be combined"),
        ("redis://h?prefix=a{b}", "prefix"),
    ],
)
def test_bad_redis_urls_are_value_errors_saying_why(url: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid state URL") as info:
        parse_redis_url(url)
    assert message in str(info.value)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ValueError, match="bogus") as info:
        parse_redis_url("redis://user:hunter2@h?bogus=1")
    assert "hunter2" not in str(info.value)
    assert "user:***@h" in str(info.value)


@pytest.mark.parametrize("url", [None, "", "memory://", "  memory:// "])
def test_no_url_or_memory_gives_the_memory_store(url: str | None) -> None:
    assert isinstance(open_state(url), MemoryStateStore)


def test_memory_url_with_a_path_is_rejected() -> None:
    with pytest.raises(ValueError, match="memory:// takes no"):
        open_state("memory://somewhere")


async def test_redis_url_gives_the_redis_store_without_connecting() -> None:
    from raptor.state.redis import RedisStateStore

    store = open_state("redis://127.0.0.1:1/0")
    assert isinstance(store, RedisStateStore)
    await store.close()


def test_bad_url_from_open_state_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown scheme"):
        open_state("postgres://h/db")


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # `import redis` (and `redis.*`) fail; the Redis adapter modules are imported afresh
    for name in ["redis", *(m for m in sys.modules if m.startswith("redis."))]:
        monkeypatch.setitem(sys.modules, name, None)
    for name in [m for m in sys.modules if m.startswith("raptor.state.redis")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r"raptor\[redis\]"):
        open_state("redis://h")


def test_import_raptor_state_pulls_no_redis() -> None:
    import subprocess

    code = "import raptor.state.urls, raptor.state.memory, sys; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
