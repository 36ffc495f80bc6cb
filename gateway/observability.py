"""Metrics (a Prometheus registry per gateway, never the global one) and the JSON access log.

Per request the data path bumps plain counters in a `RouteMetrics` resolved when the route was
compiled; they become Prometheus families only when scraped. Gauges that describe state (endpoint
health, in-flight requests, ejections) are read from the live runtime at scrape time, so they cost
nothing per request.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, Exemplar, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gateway.core.context import RequestContext
from gateway.llm_metrics import LlmMetrics

if TYPE_CHECKING:
    from gateway.cluster import ClusterRuntime

# Latency buckets (seconds): dense between 1 ms and 1 s where inference requests live, with a tail
# to 30 s for LLM-style streams.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Filter phases run in microseconds; a slow one (a remote key fetch) in milliseconds.
FILTER_BUCKETS = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5)


class FastHistogram:
    """A histogram without locks: the event loop is single-threaded, so plain increments are safe.
    (prometheus_client takes a lock per observation, which costs more than the rest of this.)"""

    __slots__ = ("bounds", "count", "counts", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0
        # Per bucket, the latest traced observation (trace id, value, unix time); built on the
        # first one, so a gateway without tracing never has it.
        self.exemplars: list[tuple[str, float, float] | None] | None = None

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def observe_traced(self, value: float, trace_id: str) -> None:
        """`observe`, keeping the trace as the bucket's exemplar (the latest one wins)."""
        index = bisect_left(self.bounds, value)
        self.counts[index] += 1
        self.sum += value
        self.count += 1
        exemplars = self.exemplars
        if exemplars is None:
            exemplars = self.exemplars = [None] * len(self.counts)
        exemplars[index] = (trace_id, value, time.time())

    def cumulative(self) -> list[Any]:
        """Buckets as Prometheus wants them: (le, cumulative count), ending with +Inf, and a
        third item, the bucket's exemplar, where a traced request fell in it."""
        out: list[Any] = []
        running = 0
        exemplars = self.exemplars
        for index, (bound, n) in enumerate(zip((*self.bounds, math.inf), self.counts, strict=True)):
            running += n
            le = "+Inf" if bound == math.inf else repr(bound)
            kept = exemplars[index] if exemplars is not None else None
            if kept is None:
                out.append((le, float(running)))
            else:
                out.append((le, float(running), Exemplar({"trace_id": kept[0]}, kept[1], kept[2])))
        return out


class RouteMetrics:
    """Request metrics of one route: plain counters updated in place, exported at scrape time."""

    __slots__ = ("cluster", "duration", "requests", "retries", "route", "upstream_duration")

    def __init__(self, route: str, cluster: str) -> None:
        self.route = route
        self.cluster = cluster
        self.requests = [0] * len(STATUS_CLASSES)
        self.duration = FastHistogram(LATENCY_BUCKETS)
        self.upstream_duration = FastHistogram(LATENCY_BUCKETS)
        self.retries = 0

    def record(self, ctx: RequestContext, total: float) -> None:
        klass = ctx.status // 100
        self.requests[klass - 1 if 1 <= klass <= 5 else 4] += 1
        trace = ctx.trace
        trace_id = trace.exemplar_id if trace is not None else None
        if trace_id is None:
            self.duration.observe(total)
        else:
            self.duration.observe_traced(total, trace_id)
        if ctx.upstream_latency:
            self.upstream_duration.observe(ctx.upstream_latency)
        if ctx.retries:
            self.retries += ctx.retries


class GatewayMetrics(Collector):
    """The gateway's metric families, registered on one registry. Route metrics are kept per
    (route, cluster) across reloads, so counters never go backwards when the config changes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._routes: dict[tuple[str, str], RouteMetrics] = {}
        self._filters: dict[tuple[str, str, str], FastHistogram] = {}
        self._filter_errors: dict[tuple[str, str, str], int] = {}
        self.listener_rejections: Callable[[], dict[int, int]] = dict
        self.unrouted = Counter(
            "turnout_unrouted_requests", "Requests that matched no route", registry=registry
        )
        self.reloads = Counter(
            "turnout_config_reloads", "Config reloads by result", ["result"], registry=registry
        )
        self.llm = LlmMetrics(registry)
        """OpenAI completions: token latencies and usage (gateway/llm_metrics.py)."""
        registry.register(self)

    def for_route(self, route: str, cluster: str) -> RouteMetrics:
        key = (route, cluster)
        metrics = self._routes.get(key)
        if metrics is None:
            metrics = self._routes[key] = RouteMetrics(route, cluster)
        return metrics

    def filter_histogram(self, route: str, name: str, phase: str) -> FastHistogram:
        """Time spent in one filter's phase on one route (kept across reloads)."""
        key = (route, name, phase)
        histogram = self._filters.get(key)
        if histogram is None:
            histogram = self._filters[key] = FastHistogram(FILTER_BUCKETS)
        return histogram

    def count_filter_error(self, route: str, name: str, phase: str) -> None:
        """A filter's hook raised (a bug in that filter, contained by the data path)."""
        key = (route, name, phase)
        self._filter_errors[key] = self._filter_errors.get(key, 0) + 1

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "turnout_requests",
            "Requests answered, by route, cluster and status class",
            labels=["route", "cluster", "status_class"],
        )
        duration = HistogramMetricFamily(
            "turnout_request_duration_seconds", "Total request latency", labels=["route", "cluster"]
        )
        upstream = HistogramMetricFamily(
            "turnout_upstream_duration_seconds",
            "Upstream latency (until the response head)",
            labels=["route", "cluster"],
        )
        retries = CounterMetricFamily(
            "turnout_retries", "Retries, by route and cluster", labels=["route", "cluster"]
        )
        for (route, cluster), m in list(self._routes.items()):
            for klass, count in zip(STATUS_CLASSES, m.requests, strict=True):
                requests.add_metric([route, cluster, klass], float(count))
            duration.add_metric([route, cluster], m.duration.cumulative(), m.duration.sum)
            upstream.add_metric([route, cluster], m.upstream_duration.cumulative(), m.upstream_duration.sum)
            retries.add_metric([route, cluster], float(m.retries))
        filters = HistogramMetricFamily(
            "turnout_filter_seconds", "Time spent in each filter phase", labels=["route", "filter", "phase"]
        )
        for (route, name, phase), histogram in list(self._filters.items()):
            filters.add_metric([route, name, phase], histogram.cumulative(), histogram.sum)
        filter_errors = CounterMetricFamily(
            "turnout_filter_errors",
            "Exceptions raised by filter hooks, by route, filter and phase",
            labels=["route", "filter", "phase"],
        )
        for (route, name, phase), count in list(self._filter_errors.items()):
            filter_errors.add_metric([route, name, phase], float(count))
        rejections = CounterMetricFamily(
            "turnout_listener_rejections",
            "Requests refused by the listener before routing (malformed, too large, too slow)",
            labels=["status"],
        )
        for status, count in sorted(self.listener_rejections().items()):
            rejections.add_metric([str(status)], float(count))
        yield from (requests, duration, upstream, retries, filters, filter_errors, rejections)


class ClusterStateCollector(Collector):
    """Reads endpoint health, in-flight counts, ejections and breaker rejections at scrape time."""

    def __init__(self, clusters: Callable[[], dict[str, ClusterRuntime]]) -> None:
        self._clusters = clusters

    def collect(self) -> Iterator[Any]:
        healthy = GaugeMetricFamily(
            "turnout_endpoint_healthy",
            "1 when available: healthy, not ejected, not drained",
            labels=["cluster", "endpoint"],
        )
        inflight = GaugeMetricFamily(
            "turnout_endpoint_inflight", "Requests in flight to the endpoint", labels=["cluster", "endpoint"]
        )
        ejections = CounterMetricFamily(
            "turnout_endpoint_ejections", "Outlier ejections of the endpoint", labels=["cluster", "endpoint"]
        )
        rejected = CounterMetricFamily(
            "turnout_circuit_breaker_rejections",
            "Requests refused by the cluster's circuit breaker",
            labels=["cluster"],
        )
        now = time.monotonic()
        for name, cluster in self._clusters().items():
            for ep in cluster.endpoints.endpoints:
                labels = [name, ep.address]
                healthy.add_metric(labels, 1.0 if ep.is_available(now) else 0.0)
                inflight.add_metric(labels, float(ep.inflight))
                ejections.add_metric(labels, float(ep.ejection_count))
            rejected.add_metric([name], float(cluster.breaker_rejections))
        yield from (healthy, inflight, ejections, rejected)
