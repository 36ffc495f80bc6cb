"""A route of one limit takes a shorter path through the filter (`_decide_one`): the same decisions,
headers and counters as the path for several limits, which a route with the same limit twice takes."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from gateway.core.filters import Response
from tests.plugins.test_rate_limit import build, decide, oip_body, request


def _counted(registry: CollectorRegistry, limit: str) -> dict[str, float]:
    samples = {
        "allowed": registry.get_sample_value(
            "turnout_rate_limit_decisions_total", {"route": "infer", "limit": limit, "decision": "allowed"}
        ),
        "limited": registry.get_sample_value(
            "turnout_rate_limit_decisions_total", {"route": "infer", "limit": limit, "decision": "limited"}
        ),
    }
    for decision in ("allow", "limited"):
        samples["decision:" + decision] = registry.get_sample_value(
            "turnout_filter_decisions_total", {"filter": "rate_limit", "route": "infer", "decision": decision}
        )
    return {name: value or 0.0 for name, value in samples.items()}


def _run(limits: list[dict[str, Any]]) -> tuple[list[tuple[int, str | None, str | None]], CollectorRegistry]:
    registry = CollectorRegistry()
    limiter = build({"limits": limits}, registry)
    seen: list[tuple[int, str | None, str | None]] = []
    for _ in range(4):
        ctx = request()
        answer = decide(limiter, ctx)
        if answer is None:
            answer = Response(200, [("ratelimit", "upstream's")], b"{}")
            limiter.on_response(ctx, answer)
        seen.append((answer.status, answer.header("ratelimit"), answer.header("retry-after")))
    return seen, registry


def test_one_limit_decides_and_counts_as_several_do() -> None:
    one = {"key": "principal", "rate": "3/min", "name": "gold"}
    alone, alone_registry = _run([one])
    twice, twice_registry = _run([one, {**one, "name": "silver"}])
    assert [status for status, _, _ in alone] == [200, 200, 200, 429]
    assert [status for status, _, _ in twice] == [200, 200, 200, 429]
    # The one limit's header is the first member of the two limits' header.
    assert [value for _, value, _ in alone] == [(value or "").split(", ")[0] for _, value, _ in twice]
    assert [retry for _, _, retry in alone] == [retry for _, _, retry in twice]
    assert alone[0][1] == '"gold";r=2;t=20'
    counted = {"allowed": 3.0, "limited": 1.0, "decision:allow": 3.0, "decision:limited": 1.0}
    assert _counted(alone_registry, "gold") == counted
    assert _counted(twice_registry, "gold") == counted


def test_a_cost_above_the_burst_is_still_refused_with_413() -> None:
    limiter = build({"limits": [{"key": "principal", "rate": "2/s", "cost": "rows"}]})
    ctx = request(body=oip_body(3))
    answer = decide(limiter, ctx)
    assert answer is not None and answer.status == 413
