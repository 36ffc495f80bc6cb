"""Passive health: eject an endpoint that fails several requests in a row (Envoy's consecutive 5xx).

The data path reports failures (5xx answers, refused connections, resets, timeouts) through the
endpoint set, which asks this detector whether the endpoint should leave. An ejection lasts
`base_ejection_time x ejection_count`, capped at `max_ejection_time`, so an endpoint that keeps
failing stays out longer each time; one that behaves for `max_ejection_time` is forgiven and starts
again at the base time. The endpoint returns on its own when the time passes: the endpoint set keeps
the earliest ejection end and rebuilds its balancer when a pick sees that moment has come.
"""

from __future__ import annotations

from collections.abc import Sequence

from routing.endpoints import Endpoint

# Envoy's defaults: five failures in a row is rarely bad luck; 5 s is long enough for a restarting
# worker to come back, and 300 s caps the back-off for an endpoint that keeps failing.
DEFAULT_CONSECUTIVE_FAILURES = 5
DEFAULT_BASE_EJECTION_TIME_S = 5.0
DEFAULT_MAX_EJECTION_TIME_S = 300.0
# At most half the endpoints may be ejected: beyond that the problem is probably not the endpoints
# (a bad deploy, an overloaded dependency) and ejecting more would overload the rest.
DEFAULT_MAX_EJECTION_PERCENT = 50.0


class OutlierDetector:
    __slots__ = ("base_ejection_time", "consecutive_failures", "max_ejection_percent", "max_ejection_time")

    def __init__(
        self,
        consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES,
        base_ejection_time: float = DEFAULT_BASE_EJECTION_TIME_S,
        max_ejection_time: float = DEFAULT_MAX_EJECTION_TIME_S,
        max_ejection_percent: float = DEFAULT_MAX_EJECTION_PERCENT,
    ) -> None:
        if consecutive_failures < 1:
            raise ValueError("consecutive_failures must be at least 1")
        if base_ejection_time <= 0 or max_ejection_time < base_ejection_time:
            raise ValueError("ejection times must satisfy 0 < base_ejection_time <= max_ejection_time")
        if not 0 <= max_ejection_percent <= 100:
            raise ValueError("max_ejection_percent must be between 0 and 100")
        self.consecutive_failures = consecutive_failures
        self.base_ejection_time = base_ejection_time
        self.max_ejection_time = max_ejection_time
        self.max_ejection_percent = max_ejection_percent

    def ejection_limit(self, member_count: int) -> int:
        """How many endpoints may be ejected at once. Like Envoy, at least one may always go (unless
        the percentage is zero, which turns ejection off), or small sets could never eject at all."""
        if self.max_ejection_percent == 0:
            return 0
        return max(1, int(member_count * self.max_ejection_percent / 100))

    def on_failure(self, endpoint: Endpoint, members: Sequence[Endpoint], now: float) -> bool:
        """Called after the endpoint's consecutive failure count went up; True when it was ejected."""
        if endpoint.consecutive_failures < self.consecutive_failures or now < endpoint.ejected_until:
            return False
        ejected_now = sum(1 for member in members if now < member.ejected_until)
        if ejected_now >= self.ejection_limit(len(members)):
            return False
        if endpoint.ejection_count and now - endpoint.ejected_until >= self.max_ejection_time:
            endpoint.ejection_count = 0
        endpoint.ejection_count += 1
        duration = min(self.base_ejection_time * endpoint.ejection_count, self.max_ejection_time)
        endpoint.ejected_until = now + duration
        endpoint.consecutive_failures = 0
        return True
