"""The ``raptor`` command.

Sub-commands import their components lazily so ``raptor validate`` starts fast and needs no
server libraries. User errors print a one-line ``error:`` message and exit non-zero — never a
Python traceback. Exit codes: 0 ok, 1 invalid input (e.g. manifests with errors), 2 usage
errors (bad flags, missing paths), 3 a dependency or service is unavailable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raptor",
        description="Raptor: features and models from notebook to production.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    v = sub.add_parser(
        "validate",
        help="validate manifests and their programs as admission does",
        description="Parse, default and validate manifests (files or folders) and lint and "
        "type-check their programs, exactly as admission does. Programs are not executed.",
    )
    v.add_argument("paths", nargs="+", metavar="PATH")
    v.add_argument("-q", "--quiet", action="store_true", help="print errors only")

    u = sub.add_parser(
        "up",
        help="run everything in one process on manifests from folders",
        description="Run the engine, the REST and gRPC accessors and a local control plane "
        "that watches the given manifest files/folders and reconciles on every change.",
    )
    u.add_argument("paths", nargs="*", metavar="PATH", help="default: ./assets if present, else .")
    u.add_argument(
        "--http",
        default=os.environ.get("RAPTOR_HTTP", "127.0.0.1:60001"),
        help="REST listen address HOST:PORT (env RAPTOR_HTTP; default 127.0.0.1:60001)",
    )
    u.add_argument(
        "--grpc",
        default=os.environ.get("RAPTOR_GRPC", "127.0.0.1:60000"),
        help="gRPC listen address HOST:PORT (env RAPTOR_GRPC; default 127.0.0.1:60000)",
    )
    u.add_argument(
        "--http-server",
        choices=("granian", "uvicorn"),
        default=os.environ.get("RAPTOR_HTTP_SERVER") or None,
        help="the REST server: granian (default when installed; a Rust HTTP layer, shorter "
        "latency tail) or uvicorn (env RAPTOR_HTTP_SERVER)",
    )
    u.add_argument(
        "--max-body",
        default=os.environ.get("RAPTOR_MAX_BODY", "1MiB"),
        metavar="SIZE",
        help="largest REST request body, e.g. 1MiB, 512KiB or bytes; larger bodies get 413 "
        "(env RAPTOR_MAX_BODY; default 1MiB)",
    )
    u.add_argument(
        "--state",
        default=os.environ.get("RAPTOR_STATE", ""),
        help="state store URL: memory:// (default) or redis://... (env RAPTOR_STATE)",
    )
    u.add_argument(
        "--no-runners", action="store_true", help="serve without consuming streaming sources"
    )
    u.add_argument("--no-watch", action="store_true", help="do not watch manifests for changes")
    u.add_argument(
        "--log-level", default=os.environ.get("RAPTOR_LOG_LEVEL", "info"), help="log level"
    )

    e = sub.add_parser(
        "export",
        help="export a module's SDK definitions as manifests (+ models)",
        description="Import a Python module of SDK definitions and write their manifests, "
        "model artifacts, a Makefile and a kustomization.yaml to the output folder.",
    )
    e.add_argument("module", metavar="FILE.py")
    e.add_argument("-o", "--out", default="out", help="output folder (default: out)")

    g = sub.add_parser("get", help="read a feature value or prediction from a running Raptor")
    g.add_argument("selector")
    g.add_argument("keys", nargs="*", metavar="KEY=VALUE")
    g.add_argument(
        "--url",
        default=os.environ.get("RAPTOR_URL", "http://127.0.0.1:60001"),
        help="REST base URL (env RAPTOR_URL; default http://127.0.0.1:60001)",
    )
    g.add_argument("--json", action="store_true", help="print the raw JSON answer")

    # --- runner sub-command (owned by the ingestion work, issue 5) ---
    from raptor.cli.runner import add_runner_parser

    add_runner_parser(sub)
    # --- end runner sub-command ---
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        from raptor import __version__

        print(f"raptor {__version__}")
        return 0
    if args.command == "validate":
        from raptor.cli.validate import run_validate

        return run_validate(args.paths, quiet=args.quiet)
    if args.command == "up":
        from raptor.cli.up import run_up

        return run_up(args)
    # --- runner sub-command (owned by the ingestion work, issue 5) ---
    if args.command == "runner":
        from raptor.cli.runner import run_runner

        return run_runner(args)
    # --- end runner sub-command ---
    if args.command == "export":
        from raptor.cli.export import run_export

        return run_export(args.module, args.out)
    if args.command == "get":
        from raptor.cli.get import run_get

        return run_get(args.selector, args.keys, url=args.url, raw=args.json)
    _parser().print_help()
    return 2


def entry() -> None:
    sys.exit(main())
