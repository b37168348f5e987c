"""Prometheus metrics of the accessor; the only module that imports ``prometheus_client``.

Recording must cost next to nothing on the hot path, so nothing here takes a lock or builds a
label tuple per request: counters are plain Python ints in lists that are bound once per route
or per feature (:meth:`Metrics.route`, :meth:`Metrics.feature`) and only turned into Prometheus
families when ``/metrics`` is scraped (a custom collector). All recording happens on the event
loop thread, so plain ``+=`` is safe.

Exposed families (each app has its own registry, so several apps in one process do not clash):

* ``raptor_http_request_duration_seconds{route,method}`` histogram;
  ``raptor_http_requests_total{route,method,code}`` counter. ``route`` is the route template
  (``/api/v1alpha1/features/{selector}``), never the raw path, so cardinality stays bounded.
* ``raptor_feature_reads_total{feature,result}`` with ``result`` = ``hit`` (value present and
  fresh), ``stale`` (present, not fresh), ``miss`` (no value) or ``error``; ``feature`` is the
  FQN of a deployed feature (unknown names are never labels).
* ``raptor_program_errors_total{feature}``: reads that failed because the feature's program
  raised or returned garbage.
* ``raptor_push_rows_total{datasource,result}`` with ``result`` = ``accepted`` / ``rejected``.
* the standard ``process_*`` and ``python_*`` families.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "FeatureCounts", "Metrics", "RouteTimer"]

CONTENT_TYPE: str = CONTENT_TYPE_LATEST

BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

HIT, STALE, MISS, ERROR, PROGRAM_ERROR = range(5)
_RESULTS = ("hit", "stale", "miss", "error")


class RouteTimer:
    """The pre-bound latency histogram and status counters of one route and method."""

    __slots__ = ("buckets", "codes", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.codes: dict[int, int] = {}
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float, status: int) -> None:
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.count += 1
        self.total += seconds
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1


class FeatureCounts(list[int]):
    """Per-feature counters, indexed by ``HIT``, ``STALE``, ``MISS``, ``ERROR``,
    ``PROGRAM_ERROR`` (a list subclass: one index increment per read)."""

    def __init__(self) -> None:
        super().__init__((0, 0, 0, 0, 0))


class Metrics:
    """The accessor's metrics and their Prometheus registry."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], RouteTimer] = {}
        self._features: dict[str, FeatureCounts] = {}
        self._push: dict[str, list[int]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def route(self, route: str, method: str) -> RouteTimer:
        """The timer of ``route`` (a template) and ``method``; bind it once and reuse it."""
        key = (route, method)
        timer = self._routes.get(key)
        if timer is None:
            timer = self._routes[key] = RouteTimer()
        return timer

    def feature(self, fqn: str) -> FeatureCounts:
        """The counters of a deployed feature (created on first use, then cached)."""
        counts = self._features.get(fqn)
        if counts is None:
            counts = self._features[fqn] = FeatureCounts()
        return counts

    def push(self, data_source: str, accepted: int, rejected: int) -> None:
        counts = self._push.get(data_source)
        if counts is None:
            counts = self._push[data_source] = [0, 0]
        counts[0] += accepted
        counts[1] += rejected

    def render(self) -> bytes:
        """The text exposition of every family."""
        return generate_latest(self.registry)

    def families(self) -> Iterator[Metric]:
        http = HistogramMetricFamily(
            "raptor_http_request_duration_seconds",
            "Latency of REST requests, by route template and method.",
            labels=("route", "method"),
        )
        requests = CounterMetricFamily(
            "raptor_http_requests",
            "REST requests, by route template, method and status code.",
            labels=("route", "method", "code"),
        )
        for (route, method), t in sorted(self._routes.items()):
            cumulative, acc = [], 0
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), t.buckets, strict=True):
                acc += n
                cumulative.append((bound, float(acc)))
            http.add_metric((route, method), cumulative, t.total)
            for code, n in sorted(t.codes.items()):
                requests.add_metric((route, method, str(code)), n)
        yield http
        yield requests
        reads = CounterMetricFamily(
            "raptor_feature_reads",
            "Feature reads by result: hit (fresh value), stale (value, not fresh), miss "
            "(no value), error.",
            labels=("feature", "result"),
        )
        programs = CounterMetricFamily(
            "raptor_program_errors",
            "Reads that failed because the feature's program failed.",
            labels=("feature",),
        )
        for fqn, c in sorted(self._features.items()):
            for i, name in enumerate(_RESULTS):
                reads.add_metric((fqn, name), c[i])
            programs.add_metric((fqn,), c[PROGRAM_ERROR])
        yield reads
        yield programs
        push = CounterMetricFamily(
            "raptor_push_rows",
            "Rows pushed to push DataSources, accepted or rejected.",
            labels=("datasource", "result"),
        )
        for src, (ok, bad) in sorted(self._push.items()):
            push.add_metric((src, "accepted"), ok)
            push.add_metric((src, "rejected"), bad)
        yield push


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()
