"""Progress of long replays: a tqdm bar when tqdm is installed, else one stderr line.

``progress=None`` (the default everywhere) shows progress only for work of at least
:data:`THRESHOLD` rows; ``True`` always, ``False`` never. The fallback rewrites one line on
stderr at most every half second (``replay default.spend: 420,000/1,000,000 rows (42%)``).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["THRESHOLD", "Progress"]

THRESHOLD = 200_000


class Progress:
    """Counts rows done out of ``total``; use as a context manager."""

    def __init__(self, label: str, total: int, enabled: bool | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.enabled = total >= THRESHOLD if enabled is None else enabled
        self._bar: Any = None
        self._last = 0.0
        if self.enabled and importlib.util.find_spec("tqdm") is not None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=label, unit="rows", leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= 0.5 or self.done >= self.total:
            self._last = now
            pct = 100 * self.done // max(self.total, 1)
            sys.stderr.write(f"\r{self.label}: {self.done:,}/{self.total:,} rows ({pct}%)")
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
