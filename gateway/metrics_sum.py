"""Sums the Prometheus expositions of several gateway processes into one.

The supervisor (`gateway.supervisor`) serves one `/metrics` for all its processes, so a scrape sees
the host's gateway as one: every sample with the same name and labels is added up across processes.
For counters and histograms (buckets, `_count`, `_sum`) that is the host's total. Gauges are summed
too: `turnout_endpoint_inflight` becomes the host's in-flight count, and
`turnout_endpoint_healthy` the number of processes that find the endpoint available. `_created`
samples are dropped: each process has its own, and a sum of timestamps means nothing. Info
(`*_info`) and state-set samples are taken as the largest value (they are 0 or 1, the same in
every process).

A process that is restarting answers no scrape: its counters are missing from the sum until it is
back, and start again from zero, as after any restart. Prometheus' `rate()` reads such a drop as a
counter reset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

# Families whose samples are flags rather than amounts: summing them would count processes.
_TAKE_LARGEST = frozenset({"info", "stateset"})
# Gauges that are a statistic or a state of each process's own sample (drift, shares, a status):
# a sum means nothing; the largest is the worst any process sees.
_LARGEST_GAUGES = frozenset(
    {
        "turnout_drift_psi",
        "turnout_drift_ks",
        "turnout_drift_js",
        "turnout_drift_state",
        "turnout_feature_nan_ratio",
        "turnout_feature_range_violation_ratio",
        "turnout_prediction_class_ratio",
        "turnout_experiment_status",
        # Read by every process from the same event store: the same value in each, not a share.
        "turnout_experiment_srm_p_value",
        "turnout_experiment_srm",
        "turnout_experiment_units",
    }
)

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(slots=True)
class _Family:
    name: str
    documentation: str
    type: str
    samples: dict[SampleKey, float] = field(default_factory=dict)


class MetricsSum(Collector):
    """The sum of the expositions given to `add`, yielded as a collector for `generate_latest`."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def add(self, exposition: str) -> None:
        for parsed in text_string_to_metric_families(exposition):
            family = self._families.get(parsed.name)
            if family is None:
                family = self._families[parsed.name] = _Family(parsed.name, parsed.documentation, parsed.type)
            # The text format exposes an info metric as a gauge named *_info, always 1.
            largest = (
                family.type in _TAKE_LARGEST
                or family.name.endswith("_info")
                or family.name in _LARGEST_GAUGES
            )
            for sample in parsed.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = family.samples.get(key)
                if old is None:
                    family.samples[key] = sample.value
                else:
                    family.samples[key] = max(old, sample.value) if largest else old + sample.value

    def collect(self) -> Iterator[Metric]:
        for family in self._families.values():
            if not family.samples:  # a `_created` family, all of its samples dropped
                continue
            metric = Metric(family.name, family.documentation, family.type)
            for (name, labels), value in family.samples.items():
                metric.add_sample(name, dict(labels), value)
            yield metric


def sum_expositions(expositions: Iterable[str], extra: Iterable[Collector] = ()) -> bytes:
    """One exposition with every sample summed across `expositions`, plus the `extra` collectors'."""
    total = MetricsSum()
    for exposition in expositions:
        total.add(exposition)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(total)
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)
