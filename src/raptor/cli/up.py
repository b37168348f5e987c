"""``raptor up``: everything in one process (SPEC 2).

The local control plane loads and watches the manifests, the engine serves them from the chosen
state store, and the REST (granian, or uvicorn: :mod:`raptor.server.http_server`) and gRPC
servers run on one asyncio loop. SIGINT/SIGTERM stop accepting work, let in-flight requests
finish, then close the state store.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["run_up"]

log = logging.getLogger("raptor.up")


def _split_address(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{flag} expects HOST:PORT, got {text!r}")
    return (host or "127.0.0.1").strip("[]"), int(port)


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
}


def parse_size(text: str, flag: str) -> int:
    """Bytes from ``1048576``, ``512KiB``, ``1MiB``, ``2MB``... (pure).

    >>> parse_size("1MiB", "--max-body"), parse_size("2000", "--max-body")
    (1048576, 2000)
    """
    t = str(text).strip()
    digits = len(t) - len(t.lstrip("0123456789"))
    number, unit = t[:digits], t[digits:].strip().lower()
    if not number or unit not in _SIZE_UNITS or int(number) <= 0:
        raise ValueError(
            f"{flag} expects a positive size such as 1048576, 512KiB or 1MiB, got {text!r}"
        )
    return int(number) * _SIZE_UNITS[unit]


def _default_paths() -> list[str]:
    return ["assets"] if Path("assets").is_dir() else ["."]


def run_up(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    paths = args.paths or _default_paths()
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        print(f"error: {', '.join(missing)}: no such file or directory", file=sys.stderr)
        return 2
    try:
        http = _split_address(args.http, "--http")
        grpc_addr = _split_address(args.grpc, "--grpc")
        args.max_body = parse_size(args.max_body, "--max-body")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        from raptor.server.grpc import create_grpc_server  # noqa: F401
        from raptor.server.http_server import HTTP_SERVERS, available_http_server
        from raptor.server.rest import create_app  # noqa: F401
    except ImportError as exc:
        print(
            f"error: raptor up needs the server extra ({exc.name} is missing): "
            "pip install 'raptor[server]'",
            file=sys.stderr,
        )
        return 3
    if args.http_server is None:
        args.http_server = available_http_server()
    elif args.http_server not in HTTP_SERVERS:  # from RAPTOR_HTTP_SERVER (argparse checks the flag)
        print(
            f"error: --http-server / RAPTOR_HTTP_SERVER: {args.http_server!r} is not one of "
            f"{', '.join(HTTP_SERVERS)}",
            file=sys.stderr,
        )
        return 2
    if args.http_server is None:
        print(
            "error: raptor up needs an HTTP server (granian or uvicorn): "
            "pip install 'raptor[server]'",
            file=sys.stderr,
        )
        return 3
    try:
        __import__(args.http_server)
    except ImportError:
        print(
            f"error: --http-server {args.http_server}: it is not installed "
            f"(pip install {args.http_server})",
            file=sys.stderr,
        )
        return 3
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_serve(paths, http, grpc_addr, args))
    except KeyboardInterrupt:
        return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the server extra brings it): ~2x the HTTP throughput."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _serve(
    paths: list[str], http: tuple[str, int], grpc_addr: tuple[str, int], args: argparse.Namespace
) -> int:
    from raptor.control.local import LocalControlPlane
    from raptor.engine.engine import Engine
    from raptor.server.grpc import create_grpc_server
    from raptor.server.http_server import HttpServerError, create_http_server
    from raptor.server.rest import create_app
    from raptor.state.urls import open_state

    try:
        state = open_state(args.state or None)
    except (ValueError, ImportError) as exc:
        print(f"error: --state: {exc}", file=sys.stderr)
        return 2
    engine = Engine(state)
    # --- ingestion (issue 5): the rest builder; secrets of DataSource config from the env ---
    import os

    from raptor.runners.config import Secrets
    from raptor.runners.rest_builder import RestComputer

    secrets = Secrets(env=dict(os.environ))
    rest_builder = RestComputer(secrets)
    engine.computers["rest"] = rest_builder
    # --- end ingestion ---
    control = LocalControlPlane(engine, paths)
    report = control.reconcile()
    _print_report(report, control)
    _tune_gc()

    # --- ingestion (issue 5): one supervisor owns the in-process runners; its metrics are
    # served on /metrics next to the accessor's ---
    from raptor.runners.loop import RunnerSettings
    from raptor.runners.supervisor import RunnerSupervisor, run_runners

    runner_settings = RunnerSettings(dead_letter_dir=Path("dead-letters"), secrets=secrets)
    supervisor = RunnerSupervisor(engine, runner_settings)
    # --- end ingestion ---
    app = create_app(
        engine,
        statuses=control.statuses,
        max_body=args.max_body,
        extra_metrics=[supervisor.metrics_text],
    )
    http_server = create_http_server(app, http[0], http[1], args.http_server)
    try:
        grpc_server = create_grpc_server(
            engine, f"{grpc_addr[0]}:{grpc_addr[1]}", statuses=control.statuses
        )
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        await engine.aclose()
        await state.close()
        return 3

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    await grpc_server.start()
    # The watcher registers its inotify watches on its task's first step, so it is live before
    # the REST server answers: an edit made as soon as /healthz answers is seen.
    watch_task = (
        None if args.no_watch else asyncio.create_task(control.watch(stop), name="raptor-watch")
    )
    await asyncio.sleep(0)
    try:
        await http_server.start()
    except HttpServerError as exc:
        await grpc_server.stop(0)
        print(f"error: {exc}", file=sys.stderr)
        if watch_task is not None:
            watch_task.cancel()
            await asyncio.gather(watch_task, return_exceptions=True)
        await engine.aclose()
        await state.close()
        return 3
    ready = sum(1 for s in control.statuses().values() if s.ready)
    rest_host = f"[{http[0]}]" if ":" in http[0] else http[0]  # an IPv6 address in a URL
    print(
        f"Raptor is up: REST http://{rest_host}:{http[1]} ({http_server.kind})  "
        f"gRPC {grpc_addr[0]}:{grpc_addr[1]}  ({ready} asset(s) ready; watching "
        f"{', '.join(paths)})",
        flush=True,
    )
    control.on_reconcile.append(lambda r: _print_report(r, control))
    # --- ingestion (issue 5): in-process stream runners, unless --no-runners ---
    runners_task: asyncio.Task[None] | None = None
    if not args.no_runners:
        runners_task = asyncio.create_task(
            run_runners(engine, control, stop, runner_settings, supervisor=supervisor),
            name="raptor-runners",
        )
    # --- end ingestion ---
    await stop.wait()
    print("Raptor is shutting down...", flush=True)
    await asyncio.gather(http_server.stop(), grpc_server.stop(grace=5))
    if watch_task is not None:
        watch_task.cancel()
        await asyncio.gather(watch_task, return_exceptions=True)
    # --- ingestion (issue 5): runners drain (write + ack what is in flight) before state closes
    if runners_task is not None:
        await asyncio.gather(runners_task, return_exceptions=True)
    await rest_builder.aclose()
    # --- end ingestion ---
    await engine.aclose()
    await state.close()
    print("Raptor stopped.", flush=True)
    return 0


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections for a long-running server.

    Everything loaded at start (modules, catalog, programs) moves to the permanent generation,
    and young collections run every 50,000 allocations instead of 700: a full collection over a
    large in-memory state otherwise pauses the loop for tens of milliseconds (the batchGet p99).
    Feature state holds no reference cycles, so memory is not at risk.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _print_report(report: object, control: object) -> None:
    from raptor.control.local import LocalControlPlane, ReconcileReport

    assert isinstance(report, ReconcileReport)
    assert isinstance(control, LocalControlPlane)
    p = report.plan
    for title, keys in (
        ("created", p.create),
        ("updated", p.update),
        ("deleted", p.delete),
        ("kept (new version rejected)", p.keep),
    ):
        for kind, fqn in keys:
            print(f"  {title:<8} {kind} {fqn}", flush=True)
    for n in report.notices:
        print(f"notice: {n}", flush=True)
    for w in report.warnings:
        print(f"warning: {w}", flush=True)
    for e in report.errors:
        print(f"error: {e}", flush=True)
    statuses = control.statuses()
    ready = [s for s in statuses.values() if s.ready]
    print(
        f"assets: {len(ready)} ready, {len(statuses) - len(ready)} not ready",
        flush=True,
    )
