"""Prometheus metrics of the batcher, on the registry it is given (one per gateway, never the global).

    turnout_batch_size{model,cluster}                      histogram: rows per upstream batch
    turnout_batch_members{model,cluster}                   histogram: requests per upstream batch
    turnout_batch_queue_delay_seconds{model,cluster}       histogram: per request, submit to dispatch
    turnout_batch_upstream_seconds{model,cluster}          histogram: per batch, the upstream call
    turnout_batch_queue_depth{model,cluster,priority}      gauge: requests waiting
    turnout_batch_size_limit{model,cluster}                gauge: the adaptive cap (when adaptive)
    turnout_batch_rejections_total{model,cluster,reason}   counter: invalid, queue_full,
                                                           queue_timeout, stopping
    turnout_batch_cancelled_total{model,cluster}           counter: withdrawn while queued
    turnout_batch_upstream_failures_total{model,cluster}   counter: batches that failed upstream

Several routes (so several batchers) may share a registry, so each family is created once per
registry and found again by name. Label children are resolved once per batch queue, so the hot path
only observes and increments.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Rows per batch: powers of two, the sizes models are usually tuned and benchmarked at.
BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# Seconds: from 100us (a batch that left at once) through typical queue delays (1-10ms) to the
# queue timeouts and overload waits of seconds.
DELAY_BUCKETS: Final = (
    0.0001,
    0.00025,
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
    1,
    2.5,
    5,
)
# Seconds per batched upstream call: from a sub-millisecond tabular model to a slow large batch.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REJECTION_REASONS: Final = ("invalid", "queue_full", "queue_timeout", "stopping")
_LABELS: Final = ("model", "cluster")

_Family = TypeVar("_Family", Counter, Gauge, Histogram)


class BatchingMetrics:
    """The batcher's metric families on one registry."""

    __slots__ = (
        "batch_members",
        "batch_size",
        "cancelled",
        "queue_delay",
        "queue_depth",
        "rejections",
        "size_limit",
        "upstream_failures",
        "upstream_latency",
    )

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.batch_size = _family(
            registry,
            Histogram,
            "turnout_batch_size",
            "Rows per batched upstream call",
            _LABELS,
            buckets=BATCH_SIZE_BUCKETS,
        )
        self.batch_members = _family(
            registry,
            Histogram,
            "turnout_batch_members",
            "Requests per batched upstream call",
            _LABELS,
            buckets=BATCH_SIZE_BUCKETS,
        )
        self.queue_delay = _family(
            registry,
            Histogram,
            "turnout_batch_queue_delay_seconds",
            "Time a request waited in the batch queue",
            _LABELS,
            buckets=DELAY_BUCKETS,
        )
        self.upstream_latency = _family(
            registry,
            Histogram,
            "turnout_batch_upstream_seconds",
            "Duration of batched upstream calls",
            _LABELS,
            buckets=LATENCY_BUCKETS,
        )
        self.queue_depth = _family(
            registry,
            Gauge,
            "turnout_batch_queue_depth",
            "Requests waiting in batch queues",
            (*_LABELS, "priority"),
        )
        self.size_limit = _family(
            registry, Gauge, "turnout_batch_size_limit", "Adaptive batch size cap", _LABELS
        )
        self.rejections = _family(
            registry,
            Counter,
            "turnout_batch_rejections",
            "Requests the batcher refused, by reason",
            (*_LABELS, "reason"),
        )
        self.cancelled = _family(
            registry, Counter, "turnout_batch_cancelled", "Requests withdrawn while queued", _LABELS
        )
        self.upstream_failures = _family(
            registry,
            Counter,
            "turnout_batch_upstream_failures",
            "Batched upstream calls that failed",
            _LABELS,
        )

    def rejected(self, model: str, cluster: str, reason: str) -> None:
        """Count a refusal outside any queue (a malformed request); queues use their own children."""
        self.rejections.labels(model, cluster, reason).inc()

    def for_queue(self, model: str, cluster: str, levels: int) -> QueueMetrics:
        return QueueMetrics(self, model, cluster, levels)


class QueueMetrics:
    """The label children of one batch queue, resolved when the queue is made."""

    __slots__ = (
        "batch_members",
        "batch_size",
        "cancelled",
        "depth",
        "queue_delay",
        "rejections",
        "size_limit",
        "upstream_failures",
        "upstream_latency",
    )

    def __init__(self, families: BatchingMetrics, model: str, cluster: str, levels: int) -> None:
        self.batch_size = families.batch_size.labels(model, cluster)
        self.batch_members = families.batch_members.labels(model, cluster)
        self.queue_delay = families.queue_delay.labels(model, cluster)
        self.upstream_latency = families.upstream_latency.labels(model, cluster)
        self.depth = [families.queue_depth.labels(model, cluster, str(level + 1)) for level in range(levels)]
        self.size_limit = families.size_limit.labels(model, cluster)
        self.rejections = {
            reason: families.rejections.labels(model, cluster, reason) for reason in REJECTION_REASONS
        }
        self.cancelled = families.cancelled.labels(model, cluster)
        self.upstream_failures = families.upstream_failures.labels(model, cluster)


def _family(
    registry: CollectorRegistry | None,
    kind: type[_Family],
    name: str,
    documentation: str,
    labels: tuple[str, ...],
    **options: Any,
) -> _Family:
    """The family registered under `name` on `registry`, or a new one registered there."""
    if registry is not None:
        # The registry has no public lookup by name; this mapping is the one it checks duplicates in
        # (prometheus_client stores counters without their _total suffix).
        existing = registry._names_to_collectors.get(name)
        if existing is not None:
            if not isinstance(existing, kind) or tuple(existing._labelnames) != labels:
                raise ValueError(f"metric {name} is already registered with another type or other labels")
            return existing
    return kind(name, documentation, labels, registry=registry, **options)
