"""Accessors: REST (ASGI, :mod:`raptor.server.rest`) and gRPC, translation only.

The one error → wire status table is :mod:`raptor.server.errors` (shared by both). Importing
this package pulls in no web framework: ``create_app`` is loaded on first use, so the gRPC
server can import :mod:`raptor.server.errors` without starlette.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raptor.server.rest import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from raptor.server.rest import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
