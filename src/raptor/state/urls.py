"""State URLs: which :class:`~raptor.state.StateStore` a ``--state URL`` means. Pure parsing.

:func:`open_state` is the one entry point (``raptor up --state``, ``RAPTOR_STATE``, settings):

* ``None``, ``""``, ``memory://`` → :class:`~raptor.state.memory.MemoryStateStore`.
* ``redis://[user:pass@]host[:port][/db]`` → one Redis server (port 6379, db 0);
  ``rediss://…`` the same over TLS; ``unix:///path/redis.sock[?db=N]`` over a Unix socket.
* ``redis+sentinel://[user:pass@]host[:port][,host[:port]…]/service[/db]`` → the master of
  Sentinel service ``service`` (Sentinel port 26379); ``rediss+sentinel://`` for TLS.
* ``redis+cluster://[user:pass@]host[:port][,host[:port]…]`` → Redis Cluster from these seed
  nodes; also ``redis://host:port[,…]?cluster=true``; ``rediss+cluster://`` for TLS.

Credentials in the URL are percent-decoded and apply to the Redis servers; Sentinels take theirs
from ``?sentinel_username=&sentinel_password=``. Other query parameters: ``cluster``, ``db``,
``prefix`` (key prefix, default ``raptor``), ``max_connections``, and for TLS ``ssl_cert_reqs``
(``required``/``optional``/``none``), ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_check_hostname``. Anything else is an error: a typo must not be ignored silently.

>>> t = parse_redis_url("redis+sentinel://:s3cret@a:5000,b/mymaster/2")
>>> t.kind, t.nodes, t.service, t.db, t.password
('sentinel', (('a', 5000), ('b', 26379)), 'mymaster', 2, 's3cret')
>>> parse_redis_url("rediss://r.example:6380?cluster=true").kind
'cluster'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from raptor.state import StateStore

__all__ = ["RedisTarget", "open_state", "parse_redis_url"]

Kind = Literal["standalone", "sentinel", "cluster", "unix"]

_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "unix": ("unix", False),
}
_OPTIONS = frozenset(
    {
        "cluster",
        "db",
        "prefix",
        "max_connections",
        "sentinel_username",
        "sentinel_password",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
    }
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where and how to reach Redis, as parsed from a URL (no connection is made)."""

    kind: Kind
    nodes: tuple[tuple[str, int], ...] = ()
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0
    service: str | None = None
    path: str | None = None
    prefix: str = "raptor"
    max_connections: int | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ssl: dict[str, str | bool] = field(default_factory=dict)

    def describe(self) -> str:
        """The target without credentials, for error messages."""
        where = self.path or ",".join(f"{h}:{p}" for h, p in self.nodes)
        extra = f" service {self.service}" if self.service else ""
        return f"redis {self.kind} {where}{extra}"


def _bad(url: str, why: str) -> ValueError:
    return ValueError(f"invalid state URL {_redact(url)!r}: {why}")


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    cred, _, tail = rest.partition("@")
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in cred else url


def _hosts(url: str, text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise _bad(url, "empty host")
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
            if rest and not rest.startswith(":"):
                raise _bad(url, f"bad host {part!r}")
        else:
            host, _, port_text = part.partition(":")
        if not host:
            raise _bad(url, f"missing host name in {part!r}")
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise _bad(url, f"bad port {port_text!r}")
            port = int(port_text)
        else:
            port = default_port
        out.append((unquote(host), port))
    return tuple(out)


def _int(url: str, name: str, text: str) -> int:
    if not text.isdigit():
        raise _bad(url, f"{name} must be a non-negative integer, got {text!r}")
    return int(text)


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a Redis state URL (see the module docstring); raise ``ValueError`` if malformed."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _SCHEMES:
        choices = ", ".join(f"{s}://" for s in _SCHEMES)
        raise _bad(url, f"unknown scheme {scheme!r}; expected memory://, {choices}")
    kind, tls = _SCHEMES[scheme]
    parts = urlsplit("x://" + rest)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - _OPTIONS)
    if unknown:
        known = ", ".join(sorted(_OPTIONS))
        raise _bad(url, f"unknown option(s) {', '.join(unknown)}; known: {known}")
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        cred, _, netloc = netloc.rpartition("@")
        user, colon, pw = cred.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    cluster = query.get("cluster", "").lower()
    if cluster not in _TRUE | _FALSE:
        raise _bad(url, f"cluster must be true or false, got {query['cluster']!r}")
    if cluster in _TRUE:
        if kind == "sentinel" or kind == "unix":
            raise _bad(url, "cluster=true cannot be combined with sentinel or unix URLs")
        kind = "cluster"
    segments = [unquote(s) for s in parts.path.split("/") if s]
    db = 0
    service = None
    path = None
    nodes: tuple[tuple[str, int], ...] = ()
    if kind == "unix":
        if netloc:
            raise _bad(url, "a unix URL has no host: use unix:///path/to/redis.sock")
        if not parts.path or parts.path == "/":
            raise _bad(url, "missing socket path")
        path = unquote(parts.path)
    else:
        if not netloc:
            raise _bad(url, "missing host")
        nodes = _hosts(url, netloc, 26379 if kind == "sentinel" else 6379)
        if kind == "standalone" and len(nodes) > 1:
            raise _bad(
                url, "several hosts need redis+sentinel://, redis+cluster:// or ?cluster=true"
            )
        if kind == "sentinel":
            if not segments:
                raise _bad(url, "missing Sentinel service name: redis+sentinel://host:port/SERVICE")
            service, segments = segments[0], segments[1:]
        if len(segments) > 1:
            raise _bad(url, f"unexpected path {parts.path!r}")
        if segments:
            db = _int(url, "db", segments[0])
    if "db" in query:
        db = _int(url, "db", query["db"])
    if kind == "cluster" and db:
        raise _bad(url, "Redis Cluster only has db 0")
    ssl: dict[str, str | bool] = {}
    for name in ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in query:
            ssl[name] = query[name]
    if "ssl_check_hostname" in query:
        flag = query["ssl_check_hostname"].lower()
        if flag not in _TRUE | _FALSE:
            raise _bad(url, "ssl_check_hostname must be true or false")
        ssl["ssl_check_hostname"] = flag in _TRUE
    if ssl and not tls:
        raise _bad(url, "ssl_* options need a TLS scheme (rediss://...)")
    reqs = ssl.get("ssl_cert_reqs")
    if reqs is not None and reqs not in ("required", "optional", "none"):
        raise _bad(url, "ssl_cert_reqs must be required, optional or none")
    max_conn = query.get("max_connections")
    prefix = query.get("prefix", "raptor")
    if not prefix or any(c in prefix for c in "{}"):
        raise _bad(url, "prefix must be non-empty and contain no braces")
    return RedisTarget(
        kind=kind,
        nodes=nodes,
        tls=tls,
        username=username,
        password=password,
        db=db,
        service=service,
        path=path,
        prefix=prefix,
        max_connections=_int(url, "max_connections", max_conn) if max_conn is not None else None,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        ssl=ssl,
    )


def open_state(url: str | None) -> StateStore:
    """The state store a URL names: memory for ``None``/``""``/``memory://``, else Redis.

    Redis support is imported only here, lazily, so ``import raptor`` pulls no network library;
    without the ``redis`` package this raises ``ImportError`` naming the ``raptor[redis]`` extra.
    """
    text = (url or "").strip()
    if text in ("", "memory://", "memory:", "memory"):
        from raptor.state.memory import MemoryStateStore

        return MemoryStateStore()
    if text.lower().startswith("memory:"):
        raise _bad(text, "memory:// takes no host, path or options")
    parse_redis_url(text)
    try:
        from raptor.state.redis import RedisStateStore
    except ImportError as exc:
        if exc.name not in ("redis", "hiredis") and not (exc.name or "").startswith("redis."):
            raise
        raise ImportError(
            f"state URL {_redact(text)!r} needs Redis support: pip install 'raptor[redis]'"
        ) from exc
    return RedisStateStore.from_url(text)
