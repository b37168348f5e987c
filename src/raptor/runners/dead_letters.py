"""Dead letters: where poison messages go, with the reason and the error (SPEC 8.1).

Each entry keeps the original message (its text, or its fields for a flat Redis entry), the
partition and position it came from, the broker time, the ``reason``
(:class:`raptor.runners.events.Reason`) and the ``error`` text. Sinks:

* the broker's own target (config ``dead_letter``, defaults ``<stream>.dead`` for Redis,
  ``<topic>.dlq`` for Kafka, ``<subject>.dead`` for NATS, ``<subscription>.dead`` topic for
  Pub/Sub), written by the source adapter (:meth:`raptor.runners.source.Source.dead_letter`);
* a local NDJSON file — config ``dead_letter: file:PATH`` (or any value ending in ``.ndjson`` /
  ``.jsonl``), and the default under ``raptor up``: ``dead-letters/<namespace>.<name>.ndjson``.
  Lines are appended, flushed and ``fsync``-ed before the messages are acknowledged.

Dead letters are written **before** the poison messages are acknowledged, so a crash in
between re-delivers and re-dead-letters them (at-least-once for dead letters).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from raptor.api.timeutil import format_timestamp, from_micros
from raptor.runners.source import DeadLetter, Source

__all__ = [
    "DeadLetterSink",
    "FileDeadLetters",
    "SourceDeadLetters",
    "choose_sink",
    "dead_letter_record",
    "file_target",
]

_encode = msgspec.json.encode


class DeadLetterSink(Protocol):
    description: str

    async def write(self, entries: Sequence[DeadLetter]) -> None:
        """Store ``entries`` durably (raise on failure: the loop retries, nothing is acked)."""
        ...


def dead_letter_record(entry: DeadLetter, data_source: str, now: int) -> dict[str, Any]:
    """The JSON document of one dead letter. Pure."""
    m = entry.message
    payload = m.payload
    if isinstance(payload, bytes | bytearray | memoryview):
        data = bytes(payload)
        try:
            original: Any = data.decode("utf-8")
        except UnicodeDecodeError:
            original = data.decode("utf-8", "backslashreplace")
    else:
        original = {str(k): v for k, v in payload.items()}
    doc: dict[str, Any] = {
        "datasource": data_source,
        "reason": entry.reason,
        "error": entry.error,
        "partition": m.partition,
        "position": m.position,
        "message": original,
        "dead_at": format_timestamp(from_micros(now)),
    }
    if m.broker_time is not None:
        doc["broker_time"] = format_timestamp(from_micros(m.broker_time))
    if m.key is not None:
        doc["key"] = m.key.decode("utf-8", "backslashreplace")
    return doc


def file_target(value: str | None) -> Path | None:
    """The file a ``dead_letter`` config value names, if it names one. Pure.

    >>> file_target("file:/tmp/dl.ndjson"), file_target("out.jsonl"), file_target("clicks.dlq")
    (PosixPath('/tmp/dl.ndjson'), PosixPath('out.jsonl'), None)
    """
    if not value:
        return None
    if value.startswith("file://"):
        return Path(value[7:])
    if value.startswith("file:"):
        return Path(value[5:])
    if value.endswith((".ndjson", ".jsonl")):
        return Path(value)
    return None


class FileDeadLetters:
    """Appends dead letters as NDJSON lines to a local file (created with its folder)."""

    def __init__(self, path: Path, data_source: str, clock: Any) -> None:
        self.path = path
        self.description = f"file {path}"
        self._data_source = data_source
        self._clock = clock

    async def write(self, entries: Sequence[DeadLetter]) -> None:
        if not entries:
            return
        now = self._clock.now_micros()
        lines = b"".join(
            _encode(dead_letter_record(e, self._data_source, now)) + b"\n" for e in entries
        )
        await asyncio.to_thread(self._append, lines)

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


class SourceDeadLetters:
    """Dead letters written by the source adapter to its broker."""

    def __init__(self, source: Source, target: str) -> None:
        self._source = source
        self.description = target

    async def write(self, entries: Sequence[DeadLetter]) -> None:
        if entries:
            await self._source.dead_letter(entries)


def choose_sink(
    configured: str | None,
    source: Source,
    data_source: str,
    clock: Any,
    default_file: Path | None = None,
) -> DeadLetterSink:
    """The sink for a DataSource: a configured file, else a configured broker target (the
    adapter reads it from the config), else ``default_file`` (``raptor up``), else the
    broker's default target."""
    path = file_target(configured)
    if path is not None:
        return FileDeadLetters(path, data_source, clock)
    if configured or default_file is None:
        return SourceDeadLetters(source, source.dead_letter_target)
    return FileDeadLetters(default_file, data_source, clock)
