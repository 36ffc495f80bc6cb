"""Metric families shared by several filters, created once per registry.

Several routes may use the same filter type, and each route builds its own filter, so a factory
cannot simply create its counter: the second route would register a duplicate name. `counter`
returns the family already registered under that name, after checking that it has the same
labels, and creates it otherwise. Children (one label set each) are resolved when a filter is
built, so the hot path only calls `.inc()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter

DECISIONS = "turnout_filter_decisions"
"""One family for every filter's verdicts: {filter, route, decision}."""
DECISIONS_DOC = "Request-phase decisions of filters, by filter, route and decision"
DECISION_LABELS = ("filter", "route", "decision")


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
    return Counter(base, documentation, list(labels), registry=registry)


def decision_counters(
    registry: CollectorRegistry | None, filter_name: str, route: str, decisions: Iterable[str]
) -> dict[str, Counter]:
    """One child of `turnout_filter_decisions_total` per decision of one filter on one route."""
    family = counter(registry, DECISIONS, DECISIONS_DOC, DECISION_LABELS)
    return {decision: family.labels(filter_name, route, decision) for decision in decisions}
