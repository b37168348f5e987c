"""Raptor: from notebook to production.

The SDK names (``data_source``, ``feature``, ``aggregation``...) are exported here as they land;
the surface is locked by ``tests/unit/test_public_api.py``.
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
