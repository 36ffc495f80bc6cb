"""The worker's Prometheus metrics, in a registry of its own (never the process-global one).

Counters and histograms are updated on the request path through per-model children resolved once
when a model loads, so a request never looks labels up. Queue depth, in-flight counts and GPU figures
are read at scrape time by collectors, so the request path does not maintain gauges at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# From half a millisecond (a small tabular model's batch-1 run on a CPU) to ten seconds (a large
# model on a saturated host); finer buckets at the low end, where most of our models live.
LATENCY_BUCKETS_S: Final = (
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
# Powers of two up to 1024: batch sizes are usually powers of two, and the gateway's batcher caps
# them well below 1024.
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True, slots=True)
class LoadSample:
    """One loaded model version's load, as read at scrape time."""

    model: str
    version: str
    waiting: int
    running: int


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """The metric children of one model version, resolved once."""

    latency: Histogram
    batch_size: Histogram
    succeeded: Counter
    failed: Counter


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._latency = Histogram(
            "turnout_worker_inference_seconds",
            "Time one inference spent in the model (excluding queueing)",
            ("model", "version"),
            registry=self.registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self._batch = Histogram(
            "turnout_worker_batch_size",
            "Batch size (first dimension) of each inference request",
            ("model", "version"),
            registry=self.registry,
            buckets=BATCH_BUCKETS,
        )
        self._inferences = Counter(
            "turnout_worker_inferences",
            "Inferences run, by outcome",
            ("model", "version", "outcome"),
            registry=self.registry,
        )

    def for_model(self, model: str, version: str) -> ModelMetrics:
        return ModelMetrics(
            latency=self._latency.labels(model, version),
            batch_size=self._batch.labels(model, version),
            succeeded=self._inferences.labels(model, version, "success"),
            failed=self._inferences.labels(model, version, "failure"),
        )

    def watch_load(self, sample: Callable[[], Iterable[LoadSample]]) -> None:
        """Expose queue depth and in-flight counts of whatever `sample` returns at each scrape."""
        self.registry.register(_LoadCollector(sample))

    def watch(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LoadCollector(Collector):
    def __init__(self, sample: Callable[[], Iterable[LoadSample]]) -> None:
        self._sample = sample

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "turnout_worker_queue_depth", "Requests waiting for an executor slot", labels=("model", "version")
        )
        running = GaugeMetricFamily(
            "turnout_worker_inflight",
            "Inferences running in the model's executor",
            labels=("model", "version"),
        )
        loaded = 0
        for load in self._sample():
            waiting.add_metric((load.model, load.version), load.waiting)
            running.add_metric((load.model, load.version), load.running)
            loaded += 1
        yield waiting
        yield running
        yield GaugeMetricFamily("turnout_worker_models_loaded", "Model versions loaded", value=loaded)
