"""The monitor's Prometheus families, computed from the filters' series when scraped.

Drift gauges are derived state (PSI of the current window), so they are computed at scrape time by
one collector per registry, shared by every monitor filter on that gateway: a series seen by several
routes is summed into one sample set, never exported twice. The sample counters are plain counters
resolved when a filter is built (see `plugins._metrics`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from plugins._metrics import counter
from plugins.monitor.filter import SAMPLE_RESULTS, MonitorFilter
from plugins.monitor.series import ModelSeries, merged

STATE_VALUES = {"ok": 0.0, "warn": 1.0, "alert": 2.0}
_SERIES = ["model", "version", "arm"]
_FEATURE = [*_SERIES, "feature"]
# The family the registry is searched by, to find this collector when a second filter is built.
_ANCHOR = "turnout_drift_psi"


class MonitorCollector(Collector):
    """Exports every attached monitor filter's series."""

    def __init__(self) -> None:
        self._filters: list[MonitorFilter] = []

    def attach(self, filter_: MonitorFilter) -> None:
        if filter_ not in self._filters:
            self._filters.append(filter_)

    def detach(self, filter_: MonitorFilter) -> None:
        if filter_ in self._filters:
            self._filters.remove(filter_)

    def series(self) -> list[ModelSeries]:
        """Every series, those with one key on several routes summed."""
        grouped: dict[tuple[str, str, str], list[ModelSeries]] = {}
        for filter_ in list(self._filters):
            for key, one in list(filter_.series.items()):
                grouped.setdefault(key, []).append(one)
        return [parts[0] if len(parts) == 1 else merged(*key, parts) for key, parts in grouped.items()]

    def describe(self) -> Iterator[Metric]:
        yield from _Families().all()

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        for one in self.series():
            labels = [one.model, one.version, one.arm]
            f.rows.add_metric(labels, float(one.rows))
            for entry in one.feature_report():
                feature = [*labels, str(entry.get("name", entry["index"]))]
                f.nan.add_metric(feature, entry["nan_rate"] + entry["inf_rate"])
                if entry["psi"] is None:
                    continue
                f.psi.add_metric(feature, entry["psi"])
                f.ks.add_metric(feature, entry["ks"])
                f.js.add_metric(feature, entry["js"])
                f.state.add_metric(feature, STATE_VALUES[entry["state"]])
                f.violations.add_metric(feature, entry["range_violation_rate"])
            for output, stats in sorted(one.outputs.items()):
                if not stats.rows:
                    continue
                if stats.kind == "probabilities":
                    histogram = stats.confidence
                    f.confidence.add_metric([*labels, output], histogram.buckets(), histogram.total)
                table = stats.classes if stats.kind == "probabilities" else stats.labels
                for name, count in sorted(table.items()):
                    f.classes.add_metric([*labels, output, name], count / stats.rows)
            if one.llm is not None:
                for reason, count in sorted(one.llm.finish_reasons.items()):
                    f.finish.add_metric([*labels, reason], float(count))
        yield from f.all()


class _Families:
    """The families of one scrape (prometheus_client builds them anew each time)."""

    __slots__ = ("classes", "confidence", "finish", "js", "ks", "nan", "psi", "rows", "state", "violations")

    def __init__(self) -> None:
        against = "of a feature, current window against the reference"
        self.psi = GaugeMetricFamily(_ANCHOR, f"Population stability index {against}", labels=_FEATURE)
        self.ks = GaugeMetricFamily(
            "turnout_drift_ks", f"Binned Kolmogorov-Smirnov statistic {against}", labels=_FEATURE
        )
        self.js = GaugeMetricFamily(
            "turnout_drift_js", f"Jensen-Shannon distance (base 2) {against}", labels=_FEATURE
        )
        self.state = GaugeMetricFamily(
            "turnout_drift_state", "Drift state of a feature: 0 ok, 1 warn, 2 alert", labels=_FEATURE
        )
        self.nan = GaugeMetricFamily(
            "turnout_feature_nan_ratio",
            "Share of sampled rows whose feature is NaN or infinite",
            labels=_FEATURE,
        )
        self.violations = GaugeMetricFamily(
            "turnout_feature_range_violation_ratio",
            "Share of sampled rows whose feature lies outside the reference's range",
            labels=_FEATURE,
        )
        self.rows = CounterMetricFamily(
            "turnout_monitor_rows", "Sampled input rows counted per model series", labels=_SERIES
        )
        self.confidence = HistogramMetricFamily(
            "turnout_prediction_confidence",
            "Confidence (largest class probability) of sampled predictions",
            labels=[*_SERIES, "output"],
        )
        self.classes = GaugeMetricFamily(
            "turnout_prediction_class_ratio",
            "Share of sampled predictions per predicted class or label",
            labels=[*_SERIES, "output", "class"],
        )
        self.finish = CounterMetricFamily(
            "turnout_llm_finish_reasons", "Sampled completions by finish reason", labels=[*_SERIES, "reason"]
        )

    def all(self) -> list[Metric]:
        return [
            self.psi, self.ks, self.js, self.state, self.nan, self.violations,
            self.rows, self.confidence, self.classes, self.finish,
        ]  # fmt: skip


def collector_for(registry: CollectorRegistry | None) -> MonitorCollector:
    """The registry's monitor collector, registered on first use."""
    if registry is not None:
        # The registry has no public lookup by name; see plugins._metrics.counter.
        existing = registry._names_to_collectors.get(_ANCHOR)
        if isinstance(existing, MonitorCollector):
            return existing
    collector = MonitorCollector()
    if registry is not None:
        registry.register(collector)
    return collector


def sample_counters(registry: CollectorRegistry | None, route: str) -> dict[str, Counter]:
    family = counter(
        registry,
        "turnout_monitor_samples_total",
        "Requests sampled for monitoring, by outcome: queued, dropped (queue full), rejected "
        "(the body could not be read, or its rows did not fit the reference) or skipped (the "
        "answer was too long to copy)",
        ("route", "result"),
    )
    return {result: family.labels(route, result) for result in SAMPLE_RESULTS}
