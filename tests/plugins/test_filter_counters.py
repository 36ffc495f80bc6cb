"""The filters' counters (plugins/_metrics.py): lock-free, and scraped as any Prometheus counter."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from plugins._metrics import LoopCounter, counter, decision_counters


def test_a_family_counts_per_label_set_and_is_scraped_as_a_counter() -> None:
    registry = CollectorRegistry()
    decisions = decision_counters(registry, "cache", "infer", ("allow", "limited"))
    assert all(isinstance(child, LoopCounter) for child in decisions.values())
    for _ in range(3):
        decisions["allow"].inc()
    decisions["limited"].inc(2.5)
    labels = {"filter": "cache", "route": "infer"}
    sample = registry.get_sample_value
    assert sample("turnout_filter_decisions_total", {**labels, "decision": "allow"}) == 3
    assert sample("turnout_filter_decisions_total", {**labels, "decision": "limited"}) == 2.5
    text = generate_latest(registry).decode()
    assert "# TYPE turnout_filter_decisions_total counter" in text
    assert 'turnout_filter_decisions_total{decision="allow",filter="cache",route="infer"} 3.0' in text
    # A second route's filter gets the same family, not a duplicate registration.
    again = decision_counters(registry, "cache", "other", ("allow",))
    again["allow"].inc()
    other = {"filter": "cache", "route": "other", "decision": "allow"}
    assert sample("turnout_filter_decisions_total", other) == 1


def test_a_counter_refuses_what_prometheus_refuses() -> None:
    family = counter(CollectorRegistry(), "turnout_things_total", "Things", ("route",))
    child = family.labels("r")
    with pytest.raises(ValueError, match="non-negative"):
        child.inc(-1)
    with pytest.raises(ValueError):
        family.inc()  # a family with labels is not a counter of its own
    child.reset()
    child.inc()
    assert child._value.get() == 1
