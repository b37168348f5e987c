"""Metrics of the stream runners, kept as plain numbers and rendered in the Prometheus text
format (0.0.4) by hand: ``prometheus_client`` stays the server's own dependency
(:mod:`raptor.server.metrics`), and this module costs nothing on the hot path (one ``+=`` per
batch, on the event loop thread).

Families, each labelled with ``datasource`` (the DataSource FQN):

* ``raptor_ingest_messages_total`` — messages fetched from the broker;
* ``raptor_ingest_events_total{result}`` — ``applied`` (written to state), ``replayed``
  (already in state: skipped by the checkpoint), ``dead`` (dead-lettered);
* ``raptor_ingest_updates_total`` — state mutations written;
* ``raptor_ingest_dead_letter_total{reason}`` — poison messages by reason (SPEC 8.1);
* ``raptor_ingest_broker_time_total`` — events timed by the broker (``timestamp_fallback``);
* ``raptor_ingest_errors_total{stage}`` — ``fetch``, ``state``, ``dead_letter``, ``ack``
  failures (each retried with backoff; nothing is acknowledged before it succeeds);
* ``raptor_ingest_batch_seconds`` (summary: ``_sum``, ``_count``) — batch processing time;
* ``raptor_ingest_lag_seconds`` — now minus the broker time of the last applied message
  (end-to-end lag); ``raptor_ingest_event_lag_seconds`` — now minus its event time;
* ``raptor_ingest_lag_messages{partition}`` — messages behind the head, where the broker says;
* ``raptor_runner_up`` — 1 while the runner consumes, 0 while it is stopped or failing;
* ``process_cpu_seconds_total``, ``process_resident_memory_bytes`` of the process.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable, Mapping

__all__ = ["CONTENT_TYPE", "RunnerMetrics", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RunnerMetrics:
    """Counters and gauges of one runner (one DataSource)."""

    def __init__(self, data_source: str) -> None:
        self.data_source = data_source
        self.messages = 0
        self.applied = 0
        self.replayed = 0
        self.dead = 0
        self.updates = 0
        self.broker_time = 0
        self.dead_by_reason: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.batches = 0
        self.batch_seconds = 0.0
        self.lag_seconds = 0.0
        self.event_lag_seconds = 0.0
        self.lag_messages: Mapping[str, int] = {}
        self.up = 0

    def error(self, stage: str) -> None:
        self.errors[stage] = self.errors.get(stage, 0) + 1

    def dead_letter(self, reason: str) -> None:
        self.dead += 1
        self.dead_by_reason[reason] = self.dead_by_reason.get(reason, 0) + 1


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_esc(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(x: float) -> str:
    return repr(float(x))


class _Family:
    def __init__(self, name: str, kind: str, text: str) -> None:
        self.lines = [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        self.name = name

    def add(self, labels: Iterable[tuple[str, str]], value: float, suffix: str = "") -> None:
        self.lines.append(f"{self.name}{suffix}{_labels(labels)} {_num(value)}")


def render(runners: Iterable[RunnerMetrics], *, process: bool = True) -> bytes:
    """The text exposition of every runner's families (and the process' own)."""
    rs = sorted(runners, key=lambda r: r.data_source)
    fam = {
        "messages": _Family(
            "raptor_ingest_messages_total", "counter", "Messages fetched from the broker."
        ),
        "events": _Family(
            "raptor_ingest_events_total",
            "counter",
            "Events by result: applied, replayed (already in state), dead (dead-lettered).",
        ),
        "updates": _Family(
            "raptor_ingest_updates_total", "counter", "State mutations written by ingestion."
        ),
        "dead": _Family("raptor_ingest_dead_letter_total", "counter", "Poison messages by reason."),
        "broker": _Family(
            "raptor_ingest_broker_time_total",
            "counter",
            "Events whose event time is the broker's time (timestamp_fallback).",
        ),
        "errors": _Family(
            "raptor_ingest_errors_total",
            "counter",
            "Failures by stage (fetch, state, dead_letter, ack); each is retried.",
        ),
        "batch": _Family(
            "raptor_ingest_batch_seconds", "summary", "Time to process and write a batch."
        ),
        "lag": _Family(
            "raptor_ingest_lag_seconds",
            "gauge",
            "Now minus the broker time of the last applied message (end-to-end lag).",
        ),
        "event_lag": _Family(
            "raptor_ingest_event_lag_seconds",
            "gauge",
            "Now minus the event time of the last applied message.",
        ),
        "lag_messages": _Family(
            "raptor_ingest_lag_messages", "gauge", "Messages behind the head, per partition."
        ),
        "up": _Family("raptor_runner_up", "gauge", "1 while the runner consumes."),
    }
    for r in rs:
        ds = ("datasource", r.data_source)
        fam["messages"].add([ds], r.messages)
        for result, n in (("applied", r.applied), ("replayed", r.replayed), ("dead", r.dead)):
            fam["events"].add([ds, ("result", result)], n)
        fam["updates"].add([ds], r.updates)
        for reason, n in sorted(r.dead_by_reason.items()):
            fam["dead"].add([ds, ("reason", reason)], n)
        fam["broker"].add([ds], r.broker_time)
        for stage, n in sorted(r.errors.items()):
            fam["errors"].add([ds, ("stage", stage)], n)
        fam["batch"].add([ds], r.batch_seconds, "_sum")
        fam["batch"].add([ds], r.batches, "_count")
        fam["lag"].add([ds], r.lag_seconds)
        fam["event_lag"].add([ds], r.event_lag_seconds)
        for partition, n in sorted(r.lag_messages.items()):
            fam["lag_messages"].add([ds, ("partition", partition)], n)
        fam["up"].add([ds], r.up)
    lines: list[str] = []
    for f in fam.values():
        lines.extend(f.lines)
    if process:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        lines += [
            "# HELP process_cpu_seconds_total Total user and system CPU time in seconds.",
            "# TYPE process_cpu_seconds_total counter",
            f"process_cpu_seconds_total {_num(usage.ru_utime + usage.ru_stime)}",
            "# HELP process_resident_memory_bytes Resident memory size in bytes.",
            "# TYPE process_resident_memory_bytes gauge",
            f"process_resident_memory_bytes {_num(_rss())}",
            "# HELP process_start_time_seconds Start time of the process since the epoch.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {_num(_START)}",
        ]
    return ("\n".join(lines) + "\n").encode()


_START = time.time()


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
