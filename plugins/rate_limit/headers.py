"""RateLimit-Policy and RateLimit headers (draft-ietf-httpapi-ratelimit-headers) and Retry-After.

    RateLimit-Policy: "per-principal";q=5;w=1          the quota: q units per w seconds
    RateLimit: "per-principal";r=0;t=1                 r units remaining, t seconds until reset

Every limit of a route is one list member, in config order. For an admitted limit `t` is the time
until its bucket is full again; for a refusing one, the time until this request would be admitted.
Structured-field integers only: fractional rates are written as one unit per longer window.
"""

from __future__ import annotations

import math

from gateway.core.config_types import Rate
from plugins.rate_limit.gcra import SLACK_S, LimitState, Verdict

RATELIMIT = "ratelimit"
RATELIMIT_POLICY = "ratelimit-policy"
RETRY_AFTER = "retry-after"


def policy_item(name: str, rate: Rate) -> str:
    """One member of RateLimit-Policy, fixed for the life of the filter."""
    if rate.count.is_integer() and rate.period.is_integer():
        return f'"{name}";q={int(rate.count)};w={int(rate.period)}'
    return f'"{name}";q=1;w={max(1, math.ceil(rate.period / rate.count))}'


def ratelimit_value(names: tuple[str, ...], verdict: Verdict) -> str:
    """The RateLimit header for one decision."""
    if len(names) == 1:
        return ratelimit_item(names[0], verdict.states[0])
    return ", ".join(ratelimit_item(name, state) for name, state in zip(names, verdict.states, strict=True))


def retry_after_value(seconds: float) -> str:
    """Whole seconds, rounded up, at least 1: a client that waits this long is admitted."""
    return str(max(1, math.ceil(seconds - SLACK_S)))


def ratelimit_item(name: str, state: LimitState) -> str:
    """One limit's member of the RateLimit header: the whole header for a route of one limit."""
    wait = state.reset_after if state.allowed else state.retry_after
    return f'"{name}";r={state.remaining};t={max(0, math.ceil(wait - SLACK_S))}'
