"""Metric families shared by several filters, created once per registry.

Several routes may use the same filter type, and each route builds its own filter, so a factory
cannot simply create its counter: the second route would register a duplicate name. `counter`
returns the family already registered under that name, after checking that it has the same
labels, and creates it otherwise. Children (one label set each) are resolved when a filter is
built, so the hot path only calls `.inc()`.

The counters are `LoopCounter`s: prometheus_client's counters take a lock on every increment, which
costs five times the increment itself, and filters count on the event loop's thread alone (as the
gateway's own `FastHistogram` does), so theirs is a plain addition.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter

DECISIONS = "turnout_filter_decisions"
"""One family for every filter's verdicts: {filter, route, decision}."""
DECISIONS_DOC = "Request-phase decisions of filters, by filter, route and decision"
DECISION_LABELS = ("filter", "route", "decision")


class _PlainValue:
    """A counter's value without a lock (prometheus_client's value protocol, exemplars aside)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float) -> None:
        self.value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self.value = float(value)

    def get(self) -> float:
        return self.value

    def set_exemplar(self, exemplar: object) -> None:
        raise ValueError("filter counters keep no exemplars")

    def get_exemplar(self) -> None:
        return None


class LoopCounter(Counter):
    """A Prometheus counter incremented from the event loop's thread only: no lock per increment.
    Scraped, reset and labelled as any `Counter`."""

    _plain: _PlainValue | None = None  # set on a counter that counts: not on a family with labels

    def _metric_init(self) -> None:
        self._plain = _PlainValue()
        self._value = self._plain
        self._created = time.time()

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        plain = self._plain
        if plain is None or amount < 0 or exemplar:
            super().inc(amount, exemplar)  # refused, or counted, as prometheus_client does
            return
        plain.value += amount


def counter(
    registry: CollectorRegistry | None, name: str, documentation: str, labels: Sequence[str]
) -> Counter:
    """The counter family `name` on `registry`: the registered one if there is one, else a new one.

    With no registry (a filter built outside a gateway) the counter is created unregistered, so the
    filter code does not need to branch on it."""
    base = name.removesuffix("_total")  # prometheus_client stores counters without the suffix
    if registry is not None:
        # The registry has no public lookup by name; this mapping is the one it checks duplicates in.
        existing = registry._names_to_collectors.get(base)
        if existing is not None:
            if not isinstance(existing, Counter) or tuple(existing._labelnames) != tuple(labels):
                raise ValueError(f"metric {base} is already registered with another type or other labels")
            return existing
    return LoopCounter(base, documentation, list(labels), registry=registry)


def decision_counters(
    registry: CollectorRegistry | None, filter_name: str, route: str, decisions: Iterable[str]
) -> dict[str, Counter]:
    """One child of `turnout_filter_decisions_total` per decision of one filter on one route."""
    family = counter(registry, DECISIONS, DECISIONS_DOC, DECISION_LABELS)
    return {decision: family.labels(filter_name, route, decision) for decision in decisions}
