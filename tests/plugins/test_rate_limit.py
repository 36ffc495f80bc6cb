"""The rate-limit filter with its in-process backend: GCRA arithmetic, headers, costs, several limits."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.core.context import Principal, RequestContext
from gateway.core.filters import BuildContext, Filter, Response
from plugins.rate_limit import FACTORY, RateLimitConfig
from plugins.rate_limit.costs import cost_rows, cost_tokens
from plugins.rate_limit.gcra import GcraLimit
from plugins.rate_limit.memory_backend import MemoryLimiter


def build(config: dict[str, Any], registry: CollectorRegistry | None = None, route: str = "infer") -> Filter:
    return FACTORY(RateLimitConfig.model_validate(config), BuildContext(route, "up", registry))


def request(
    principal: str | None = "alice",
    *,
    tenant: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    client_ip: str = "10.0.0.1",
) -> RequestContext:
    who = Principal(principal, tenant=tenant) if principal is not None else None
    ctx = RequestContext("POST", "/v2/models/m/infer", "", headers or {}, client_ip, 0.0, principal=who)
    ctx.route, ctx.model, ctx.body = "infer", "m", body
    return ctx


def decide(limiter: Filter, ctx: RequestContext) -> Response | None:
    decision = limiter.on_request(ctx)
    assert not asyncio.iscoroutine(decision), "the memory backend decides without awaiting"
    return decision  # type: ignore[return-value]


def oip_body(rows: int) -> bytes:
    return orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 2], "data": [0.0] * (rows * 2)}]}
    )


# --- GCRA arithmetic on explicit clocks -------------------------------------------------------------


def test_a_full_bucket_admits_the_burst_then_refills_at_the_rate() -> None:
    limiter = MemoryLimiter([GcraLimit.of(5, 1.0, 5)])
    verdicts = [limiter.decide(["k"], [1], 100.0) for _ in range(6)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert [v.states[0].remaining for v in verdicts] == [4, 3, 2, 1, 0, 0]
    assert verdicts[-1].retry_after == pytest.approx(0.2)
    assert not limiter.decide(["k"], [1], 100.19).allowed
    assert limiter.decide(["k"], [1], 100.2).allowed  # one interval later: exactly one more unit
    assert not limiter.decide(["k"], [1], 100.2).allowed


def test_burst_larger_than_rate_and_costs_above_one() -> None:
    limiter = MemoryLimiter([GcraLimit.of(10, 60.0, 30)])  # 10/min with bursts of 30
    assert limiter.decide(["k"], [25], 0.0).allowed
    refused = limiter.decide(["k"], [6], 0.0)
    assert not refused.allowed
    assert refused.states[0].remaining == 5
    assert refused.retry_after == pytest.approx(6.0)  # one unit every 6 s
    assert limiter.decide(["k"], [5], 0.0).allowed


def test_keys_are_independent_and_idle_keys_are_forgotten() -> None:
    limiter = MemoryLimiter([GcraLimit.of(1, 1.0, 1)])
    for index in range(3000):
        assert limiter.decide([f"caller-{index}"], [1], 0.0).allowed
    assert not limiter.decide(["caller-7"], [1], 0.0).allowed
    assert len(limiter) == 3000
    # Ten seconds later those buckets are full again: the sweep that comes with growth drops them.
    for index in range(3000):
        limiter.decide([f"late-{index}"], [1], 10.0)
    assert len(limiter) == 3000
    assert limiter.decide(["caller-7"], [1], 10.0).allowed


# --- the filter ------------------------------------------------------------------------------------------


async def test_concurrent_requests_admit_exactly_the_limit() -> None:
    limiter = build({"limits": [{"key": "principal", "rate": "20/h"}]})

    async def one() -> Response | None:
        await asyncio.sleep(0)
        return decide(limiter, request())

    decisions = await asyncio.gather(*(one() for _ in range(200)))
    assert sum(d is None for d in decisions) == 20
    assert {d.status for d in decisions if d is not None} == {429}


def test_limited_answer_has_retry_after_and_ratelimit_headers() -> None:
    limiter = build({"limits": [{"key": "principal", "rate": "5/s"}]})
    for _ in range(5):
        assert decide(limiter, request()) is None
    answer = decide(limiter, request())
    assert answer is not None and answer.status == 429
    assert answer.header("retry-after") == "1"
    assert answer.header("ratelimit-policy") == '"per-principal";q=5;w=1'
    assert answer.header("ratelimit") == '"per-principal";r=0;t=1'
    assert answer.body is not None
    payload = orjson.loads(answer.body)
    assert payload["code"] == "too_many_requests"
    assert "per-principal" in payload["error"] and "5/s" in payload["error"]


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    limiter = build({"limits": [{"key": "principal", "rate": "2/min", "burst": 1}]})
    assert decide(limiter, request()) is None
    answer = decide(limiter, request())
    assert answer is not None
    assert answer.header("retry-after") in {"30", "29"}  # 30 s, less what the test itself took
    assert answer.header("ratelimit-policy") == '"per-principal";q=2;w=60'


def test_admitted_responses_carry_ratelimit_headers() -> None:
    limiter = build({"limits": [{"key": "principal", "rate": "10/s", "name": "gold"}]})
    ctx = request()
    assert decide(limiter, ctx) is None
    response = Response(200, [("content-type", "application/json")], b"{}")
    limiter.on_response(ctx, response)
    assert response.header("ratelimit-policy") == '"gold";q=10;w=1'
    assert response.header("ratelimit") == '"gold";r=9;t=1'


def test_the_ratelimit_headers_replace_the_upstreams_copies() -> None:
    limiter = build({"limits": [{"key": "principal", "rate": "10/s", "name": "gold"}]})
    ctx = request()
    assert decide(limiter, ctx) is None
    upstream = [("ratelimit", "r=1000"), ("content-type", "application/json"), ("ratelimit-policy", "q=1")]
    response = Response(200, upstream, b"{}")
    limiter.on_response(ctx, response)
    assert response.headers == [
        ("content-type", "application/json"),
        ("ratelimit-policy", '"gold";q=10;w=1'),
        ("ratelimit", '"gold";r=9;t=1'),
    ]
    assert upstream[0] == ("ratelimit", "r=1000")  # the list the response came with is not edited


def test_callers_are_limited_separately_and_anonymous_ones_by_ip() -> None:
    limiter = build({"limits": [{"key": "principal", "rate": "1/h"}]})
    assert decide(limiter, request("alice")) is None
    assert decide(limiter, request("bob")) is None
    assert decide(limiter, request("alice")) is not None
    assert decide(limiter, request(None, client_ip="10.0.0.5")) is None
    assert decide(limiter, request(None, client_ip="10.0.0.6")) is None
    assert decide(limiter, request(None, client_ip="10.0.0.5")) is not None


def test_header_and_tenant_keys() -> None:
    limiter = build(
        {"limits": [{"key": "header:X-Api-Key", "rate": "1/h"}, {"key": "tenant", "rate": "2/h"}]}
    )
    assert decide(limiter, request("a", tenant="acme", headers={"x-api-key": "k1"})) is None
    assert decide(limiter, request("b", tenant="acme", headers={"x-api-key": "k1"})) is not None  # same key
    assert decide(limiter, request("c", tenant="acme", headers={"x-api-key": "k2"})) is None
    refused = decide(limiter, request("d", tenant="acme", headers={"x-api-key": "k3"}))  # tenant spent
    assert refused is not None
    assert refused.header("ratelimit") == '"per-header-x-api-key";r=1;t=0, "per-tenant";r=0;t=1800'


def test_a_refusing_limit_does_not_charge_the_others() -> None:
    registry = CollectorRegistry()
    limiter = build(
        {
            "limits": [
                {"key": "principal", "rate": "10/h", "name": "user"},
                {"key": "route", "rate": "2/h", "name": "route"},
            ]
        },
        registry,
    )
    for caller in ("alice", "bob"):
        assert decide(limiter, request(caller)) is None
    for _ in range(5):
        refused = decide(limiter, request("alice"))
        assert refused is not None and refused.status == 429
        assert (refused.header("ratelimit") or "").startswith('"user";r=9;')
        assert "rate limit 'route'" in orjson.loads(refused.body or b"{}")["error"]
    sample = registry.get_sample_value
    labels = {"route": "infer", "limit": "route"}
    assert sample("turnout_rate_limit_decisions_total", {**labels, "decision": "limited"}) == 5
    assert sample("turnout_rate_limit_decisions_total", {**labels, "decision": "allowed"}) == 2
    user = {"route": "infer", "limit": "user", "decision": "limited"}
    assert sample("turnout_rate_limit_decisions_total", user) == 0


def test_cost_in_rows_reads_the_batch_size() -> None:
    limiter = build({"limits": [{"key": "principal", "rate": "10/h", "cost": "rows"}]})
    assert limiter.needs_request_body
    assert decide(limiter, request(body=oip_body(4))) is None
    assert decide(limiter, request(body=oip_body(6))) is None
    refused = decide(limiter, request(body=oip_body(1)))
    assert refused is not None and refused.status == 429
    assert not build({"limits": [{"key": "principal", "rate": "1/s"}]}).needs_request_body


def test_a_cost_above_the_burst_is_refused_with_413() -> None:
    limiter = build({"limits": [{"key": "principal", "rate": "10/s", "cost": "rows"}]})
    answer = decide(limiter, request(body=oip_body(11)))
    assert answer is not None and answer.status == 413
    assert "costs 11 units" in orjson.loads(answer.body or b"{}")["error"]
    assert decide(limiter, request(body=oip_body(10))) is None  # nothing was charged by the 413


@pytest.mark.parametrize(
    ("body", "rows"),
    [
        (oip_body(3), 3),
        (orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [], "data": 1.0}]}), 1),
        (orjson.dumps({"instances": [[1, 2], [3, 4], [5, 6]]}), 3),
        (orjson.dumps({"inputs": {"a": [1, 2], "b": [3, 4]}}), 2),
        (orjson.dumps({"inputs": [[1], [2], [3], [4]]}), 4),
        (b"not json", 1),
        (None, 1),
    ],
)
def test_rows_of_each_body_shape(body: bytes | None, rows: int) -> None:
    assert cost_rows(request(body=body)) == rows


def test_rows_of_a_body_with_binary_tensors() -> None:
    head = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [7, 1], "parameters": {"binary_data_size": 28}}
            ]
        }
    )
    ctx = request(body=head + bytes(28), headers={"inference-header-content-length": str(len(head))})
    assert cost_rows(ctx) == 7


def test_tokens_estimate_prompt_and_answer() -> None:
    chat = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 100}
    assert cost_tokens(request(body=orjson.dumps(chat))) == 110
    parts = {"messages": [{"content": [{"type": "text", "text": "y" * 8}]}], "max_completion_tokens": 5}
    assert cost_tokens(request(body=orjson.dumps(parts))) == 7
    assert cost_tokens(request(body=orjson.dumps({"prompt": "abc"}))) == 1
    limiter = build({"limits": [{"key": "principal", "rate": "200/min", "cost": "tokens"}]})
    assert decide(limiter, request(body=orjson.dumps(chat))) is None
    assert decide(limiter, request(body=orjson.dumps(chat))) is not None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"limits": []}, "at least 1"),
        ({"limits": [{"key": "user", "rate": "1/s"}]}, "unknown key"),
        ({"limits": [{"key": "principal", "rate": "fast"}]}, "invalid rate"),
        ({"limits": [{"key": "principal", "rate": "1/s", "burst": 0}]}, "greater than or equal to 1"),
        ({"limits": [{"key": "principal", "rate": "1/s"}, {"key": "principal", "rate": "9/h"}]}, "distinct"),
        ({"limits": [{"key": "principal", "rate": "1/s", "name": 'a"b'}]}, "invalid limit name"),
    ],
)
def test_config_errors_say_what_is_wrong(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RateLimitConfig.model_validate(config)


def test_redis_backend_needs_a_url() -> None:
    with pytest.raises(ValueError, match="redis_url"):
        build({"limits": [{"key": "principal", "rate": "1/s"}], "backend": "redis"})
