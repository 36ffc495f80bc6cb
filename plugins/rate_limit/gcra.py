"""The generic cell rate algorithm (GCRA): a token bucket kept as one timestamp per key.

A limit of `count` per `period` with bursts of `burst` has an emission interval T = period / count
(the time one unit of cost takes to refill) and a tolerance tau = burst * T. The state of a key is
its theoretical arrival time (TAT): when its bucket will be full again. A request of cost c at
time `now` would move the TAT to max(TAT, now) + c*T; it is admitted when that new TAT lies at most
tau ahead of now, and refused otherwise, leaving the TAT unchanged. Remaining units are the tokens
left in the bucket, (now + tau - TAT) / T. A key whose TAT is in the past has a full bucket, exactly
as a key never seen, so such keys can be forgotten at any time.

This is the same arithmetic as the Lua script of `redis_backend` (there in microseconds of Redis
time); both admit a request within `SLACK_S` of its slot, because summing a fractional T many times
in floating point can overshoot the exact boundary by a few ulps.

Reference: ITU-T I.371 (the virtual scheduling algorithm); Brandur Leach, "Rate limiting, cells and
GCRA" (2015).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SLACK_S = 1e-6
"""Admission slack in seconds: far below any real interval, far above float rounding over a burst."""


@dataclass(frozen=True, slots=True)
class GcraLimit:
    """A limit's parameters, computed once from its rate and burst."""

    interval: float
    """T: seconds per unit of cost."""
    tolerance: float
    """tau = burst * T: how far ahead of now the TAT may run."""
    burst: int

    @classmethod
    def of(cls, count: float, period: float, burst: int) -> GcraLimit:
        interval = period / count
        return cls(interval, burst * interval, burst)


@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit's answer to one request."""

    allowed: bool
    remaining: int
    """Whole units left in the bucket after this request (before it, when refused)."""
    reset_after: float
    """Seconds until the bucket is full again."""
    retry_after: float
    """Seconds until a request of this cost would be admitted; 0 when admitted."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Every limit's answer; the request passes only when all admit it."""

    allowed: bool
    states: tuple[LimitState, ...]

    @property
    def retry_after(self) -> float:
        return max(state.retry_after for state in self.states)


def gcra_step(limit: GcraLimit, tat: float, now: float, cost: int) -> tuple[float, LimitState]:
    """(the TAT to keep if the request is committed, the limit's answer) for `cost` units at `now`."""
    base = tat if tat > now else now
    new_tat = base + cost * limit.interval
    allow_at = new_tat - limit.tolerance
    if allow_at - now > SLACK_S:
        available = math.floor((now + limit.tolerance - base + SLACK_S) / limit.interval)
        return base, LimitState(False, max(0, available), base - now, allow_at - now)
    remaining = math.floor((now + limit.tolerance - new_tat + SLACK_S) / limit.interval)
    return new_tat, LimitState(True, max(0, remaining), new_tat - now, 0.0)


def uncharged(limit: GcraLimit, state: LimitState, cost: int) -> LimitState:
    """An admitting limit's state when another limit refused the request, so nothing was charged."""
    if not state.allowed:
        return state
    return LimitState(
        True,
        min(limit.burst, state.remaining + cost),
        max(0.0, state.reset_after - cost * limit.interval),
        0.0,
    )
