"""``raptor runner --data-source NS/NAME [PATH...] --state URL [--http ADDR]`` (SPEC 8.1).

A stream consumer for one streaming DataSource: what the operator runs as a Deployment, and
what a single machine runs beside ``raptor up --no-runners`` servers sharing one Redis.
Manifests come from ``PATH`` (files/folders, default ``./assets`` or ``.``), loaded and
checked exactly as ``raptor up`` does; ``--http`` serves ``/healthz``, ``/readyz``,
``/metrics``. SIGTERM/SIGINT drain the batch in flight (written and acknowledged), then exit 0.

Settings from flags and the environment are read here, once (STYLE rule 11):
``--consumer`` (env ``RAPTOR_CONSUMER``, default the host name) is the stable consumer identity;
``--secrets-dir`` (env ``RAPTOR_SECRETS_DIR``) where ``secretKeyRef`` files are mounted;
``--dead-letter-dir`` sends dead letters to ``DIR/<namespace>.<name>.ndjson`` instead of the
broker default. Exit codes: 0 stopped cleanly, 1 invalid manifests / DataSource, 2 usage, 3 a
dependency or service unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

__all__ = ["add_runner_parser", "run_runner"]

log = logging.getLogger("raptor.runner")


def add_runner_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``runner`` sub-command's arguments."""
    r = sub.add_parser(
        "runner",
        help="consume one streaming DataSource into the state store",
        description="Run the stream consumer of one streaming DataSource: read its broker, run "
        "the programs of its features on every event and update the state store. Serves "
        "/healthz, /readyz and /metrics with --http.",
    )
    r.add_argument("paths", nargs="*", metavar="PATH", help="default: ./assets if present, else .")
    r.add_argument("--data-source", required=True, metavar="NS/NAME", help="the DataSource")
    r.add_argument(
        "--state",
        default=os.environ.get("RAPTOR_STATE", ""),
        help="state store URL, e.g. redis://host:6379 (env RAPTOR_STATE)",
    )
    r.add_argument(
        "--http",
        default=os.environ.get("RAPTOR_RUNNER_HTTP", ""),
        help="serve /healthz /readyz /metrics on HOST:PORT (env RAPTOR_RUNNER_HTTP)",
    )
    r.add_argument(
        "--consumer",
        default=os.environ.get("RAPTOR_CONSUMER", ""),
        help="stable consumer identity (env RAPTOR_CONSUMER; default: the host name)",
    )
    r.add_argument(
        "--secrets-dir",
        default=os.environ.get("RAPTOR_SECRETS_DIR", "/var/run/secrets/raptor"),
        help="folder of mounted secrets: DIR/<secret>/<key> (env RAPTOR_SECRETS_DIR)",
    )
    r.add_argument("--dead-letter-dir", default="", help="write dead letters to files here")
    r.add_argument("--batch-size", type=int, default=0, help="messages per batch (default: config)")
    r.add_argument(
        "--log-level", default=os.environ.get("RAPTOR_LOG_LEVEL", "info"), help="log level"
    )


def _split(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--http expects HOST:PORT, got {text!r}")
    return (host or "127.0.0.1").strip("[]"), int(port)


def run_runner(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    ns, sep, name = str(args.data_source).partition("/")
    if not sep or not ns or not name:
        print("error: --data-source expects NAMESPACE/NAME, e.g. default/clicks", file=sys.stderr)
        return 2
    paths = args.paths or (["assets"] if Path("assets").is_dir() else ["."])
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        print(f"error: {', '.join(missing)}: no such file or directory", file=sys.stderr)
        return 2
    try:
        http = _split(args.http) if args.http else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.batch_size < 0:
        print("error: --batch-size must be positive", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(ns, name, paths, http, args))
    except KeyboardInterrupt:
        return 0


async def _run(
    ns: str, name: str, paths: list[str], http: tuple[str, int] | None, args: argparse.Namespace
) -> int:
    from raptor.api.names import fqn_of
    from raptor.control.local import LocalControlPlane
    from raptor.engine.engine import Engine
    from raptor.errors import RaptorError
    from raptor.runners.config import Secrets
    from raptor.runners.loop import RunnerSettings, StreamRunner, default_consumer
    from raptor.runners.process import serve_runner
    from raptor.state.urls import open_state

    try:
        state = open_state(args.state or None)
    except (ValueError, ImportError) as exc:
        print(f"error: --state: {exc}", file=sys.stderr)
        return 2
    if not args.state:
        log.warning("no --state given: consuming into process memory, which nobody else reads")
    engine = Engine(state)
    try:
        control = LocalControlPlane(engine, paths)
        report = control.reconcile()
        for e in report.errors:
            print(f"error: {e}", file=sys.stderr)
        fqn = fqn_of(ns, name)
        src = engine.catalog.data_sources.get(fqn)
        if src is None:
            print(
                f"error: DataSource {ns}/{name} ({fqn}) is not in {', '.join(paths)}",
                file=sys.stderr,
            )
            return 1
        if src.kind.lower() != "streaming":
            print(
                f"error: DataSource {ns}/{name} is of kind {src.kind!r}; runners consume "
                "'streaming' DataSources",
                file=sys.stderr,
            )
            return 1
        if not [f for f in engine.catalog.features_of(fqn) if f.program is not None]:
            print(
                f"error: no ready feature reads DataSource {ns}/{name}: consuming it would "
                "acknowledge events nobody uses",
                file=sys.stderr,
            )
            return 1
        settings = RunnerSettings(
            consumer=args.consumer or default_consumer(),
            max_batch=args.batch_size or None,
            dead_letter_dir=Path(args.dead_letter_dir) if args.dead_letter_dir else None,
            secrets=Secrets(env=dict(os.environ), secrets_dir=Path(args.secrets_dir)),
        )
        try:
            runner = StreamRunner(engine, src, settings)
        except ImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        except RaptorError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        from raptor.runners.process import tune_gc

        tune_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"Raptor runner: consuming {runner.source.description} into {state!r}", flush=True)
        code = await serve_runner(runner, stop, http)
        print("Raptor runner stopped.", flush=True)
        return code
    finally:
        await engine.aclose()
        await state.close()
