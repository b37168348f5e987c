"""How the Redis state store talks to Redis: one round trip per node for a list of commands.

The only module of Raptor's state that builds redis-py clients (redis-py's asyncio client,
with hiredis); :mod:`raptor.state.redis` (the store) imports only redis-py's exceptions, to
translate them. A :class:`Transport` sends a list of commands (tuples of ``bytes``/``str``/``int``)
and returns the replies in order, error replies as exception objects:

* :class:`PoolTransport` (one server, or a Sentinel-managed master) writes the whole list as one
  pipeline on one pooled connection, RESP-encoded by a packer several times faster than
  redis-py's generic one; a connection that fails mid-call is dropped, not reused.
* :class:`ClusterTransport` lets redis-py group the pipeline by node and send to the nodes
  concurrently; an ``MGET`` of keys of many slots becomes one ``GET`` per key.

:func:`connect` builds the transport a :class:`~raptor.state.urls.RedisTarget` names; clients
connect lazily, on the first command.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from raptor.state.urls import RedisTarget

__all__ = ["ClusterTransport", "Command", "PoolTransport", "Transport", "connect"]

Command = tuple[Any, ...]
"""One Redis command: its name and arguments (``bytes``, ``str`` or ``int``)."""


class Transport(Protocol):
    async def execute(self, cmds: Sequence[Command]) -> list[Any]:
        """Send commands in one round trip per node; error replies come back as exceptions."""
        ...

    async def load(self, sources: Sequence[str]) -> None:
        """Load scripts into the script cache of every node."""
        ...

    async def aclose(self) -> None: ...


def _pack(cmds: Sequence[Command]) -> list[bytes]:
    """RESP-encode commands (args are bytes, str or int). Several times faster than redis-py's
    generic packer, which dominates a 500-command batch otherwise."""
    out: list[bytes] = []
    append = out.append
    for cmd in cmds:
        append(b"*%d\r\n" % len(cmd))
        for a in cmd:
            if type(a) is bytes:
                b = a
            elif type(a) is str:
                b = a.encode()
            elif type(a) is int:
                b = b"%d" % a
            else:
                raise TypeError(f"cannot send {type(a).__name__} to Redis")
            if len(b) < 4096:
                append(b"$%d\r\n%b\r\n" % (len(b), b))
            else:
                append(b"$%d\r\n" % len(b))
                append(b)
                append(b"\r\n")
    return out


class PoolTransport:
    """One server (or a Sentinel-managed master): a pipeline on one pooled connection."""

    def __init__(self, client: aredis.Redis, closers: Sequence[aredis.Redis] = ()) -> None:
        self._client = client
        self._pool = client.connection_pool
        self._closers = tuple(closers)

    async def execute(self, cmds: Sequence[Command]) -> list[Any]:
        pool = self._pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(_pack(cmds), check_health=False)
            out: list[Any] = []
            for _ in cmds:
                try:
                    out.append(await conn.read_response())
                except ResponseError as exc:
                    out.append(exc)
            return out
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)

    async def load(self, sources: Sequence[str]) -> None:
        for reply in await self.execute([("SCRIPT", "LOAD", src) for src in sources]):
            if isinstance(reply, Exception):
                raise reply

    async def aclose(self) -> None:
        await self._client.aclose()
        for c in self._closers:
            await c.aclose()


class ClusterTransport:
    """Redis Cluster: redis-py groups a pipeline by node and sends to the nodes concurrently."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client

    async def execute(self, cmds: Sequence[Command]) -> list[Any]:
        pipe = self._client.pipeline()
        for cmd in cmds:
            if cmd[0] == "MGET":  # keys of many slots: one GET each, grouped by node
                for key in cmd[1:]:
                    pipe.execute_command("GET", key)
            else:
                pipe.execute_command(*cmd)
        flat = iter(await pipe.execute(raise_on_error=False))
        out: list[Any] = []
        for cmd in cmds:
            if cmd[0] == "MGET":
                got = [next(flat) for _ in cmd[1:]]
                error = next((r for r in got if isinstance(r, Exception)), None)
                out.append(error if error is not None else got)
            else:
                out.append(next(flat))
        return out

    async def load(self, sources: Sequence[str]) -> None:
        for src in sources:
            await self._client.script_load(src)  # every primary

    async def aclose(self) -> None:
        await self._client.aclose()


def connect(
    t: RedisTarget,
    *,
    username: str | None,
    password: str | None,
    db: int,
    max_conn: int | None,
    timeout: float,
) -> Transport:
    """A lazy client for ``t`` (nothing connects before the first command). ``timeout`` bounds
    connecting; a command has no socket timeout (the store puts one deadline over each call),
    and redis-py does not retry (the store fails fast instead)."""
    common: dict[str, Any] = {
        "username": username,
        "password": password,
        "socket_timeout": None,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if t.tls:
        common["ssl"] = True
        common.update(t.ssl)
    pool_opts: dict[str, Any] = {"max_connections": max_conn} if max_conn else {}
    if t.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in t.nodes]
        opts: dict[str, Any] = {"max_connections": max_conn} if max_conn else {}
        cluster = RedisCluster(startup_nodes=nodes, **opts, **common)
        return ClusterTransport(cluster)
    if t.kind == "sentinel":
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "username": t.sentinel_username,
            "password": t.sentinel_password,
        }
        if t.tls:
            sentinel_kwargs["ssl"] = True
            sentinel_kwargs.update(t.ssl)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(t.nodes), sentinel_kwargs=sentinel_kwargs, **common
        )
        assert t.service is not None
        master = sentinel.master_for(t.service, db=db, **pool_opts)
        return PoolTransport(master, closers=sentinel.sentinels)
    if t.kind == "unix":
        client = aredis.Redis(unix_socket_path=t.path, db=db, **pool_opts, **common)
    else:
        host, port = t.nodes[0]
        client = aredis.Redis(host=host, port=port, db=db, **pool_opts, **common)
    return PoolTransport(client)
