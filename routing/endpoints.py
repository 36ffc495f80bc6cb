"""One upstream endpoint and the state that the data path, health checks and balancers share.

The data path updates `inflight` and the latency estimate around every call; health checkers and the
outlier detector flip availability; balancers only read. All of it runs on one event loop, so plain
attributes need no locks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

# Peak-EWMA decay: latency observations older than this weigh 1/e as much as a fresh one.
# 10 s is linkerd's default; long enough to smooth noise, short enough to notice a slow endpoint.
DEFAULT_EWMA_DECAY_S = 10.0


@dataclass(slots=True, eq=False)
class Endpoint:
    """An upstream address with its health and load state."""

    host: str
    port: int
    weight: int = 1
    hostname: str | None = None
    """The DNS name this address was resolved from, when it came from discovery."""

    active_healthy: bool = True
    """Result of the active health checker (True until a check says otherwise)."""
    ejected_until: float = 0.0
    """Outlier detection: monotonic time until which the endpoint is ejected."""
    ejection_count: int = 0
    consecutive_failures: int = 0
    drained: bool = False
    """Set by an operator through the admin API: no new requests."""
    available_since: float = field(default_factory=time.monotonic)
    """When the endpoint joined or last returned to service (drives slow start)."""

    inflight: int = 0
    total_requests: int = 0
    total_failures: int = 0
    queue_depth: int | None = None
    """The last queue depth the endpoint reported (x-turnout-queue-depth), if it reports one."""
    reported_inflight: int | None = None
    """The last in-flight count the endpoint reported (x-turnout-inflight), if it reports one."""

    ewma_latency: float = 0.0
    """Peak-EWMA latency estimate in seconds (0 until the first observation)."""
    _ewma_stamp: float = 0.0
    address: str = field(init=False)
    """host:port, with an IPv6 host in brackets so the port stays unambiguous (computed once: the
    data path reads it for every request)."""

    def __post_init__(self) -> None:
        self.address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def is_available(self, now: float) -> bool:
        """Healthy, not ejected and not drained: eligible for new requests."""
        return self.active_healthy and not self.drained and now >= self.ejected_until

    def observe_latency(self, seconds: float, now: float, decay: float = DEFAULT_EWMA_DECAY_S) -> None:
        """Peak-EWMA update: a slower observation replaces the estimate at once, a faster one decays
        towards it, so the estimate reacts fast to trouble and slowly to recovery."""
        if seconds > self.ewma_latency or self._ewma_stamp == 0.0:
            self.ewma_latency = seconds
        else:
            elapsed = max(now - self._ewma_stamp, 0.0)
            w = math.exp(-elapsed / decay)
            self.ewma_latency = self.ewma_latency * w + seconds * (1.0 - w)
        self._ewma_stamp = now

    def decayed_latency(self, now: float, decay: float = DEFAULT_EWMA_DECAY_S) -> float | None:
        """The latency estimate aged to `now`, or None before the first observation.

        With no new observations the estimate decays towards zero, so an endpoint that was slow once
        and then avoided is eventually tried again instead of being starved forever.
        """
        if self._ewma_stamp == 0.0:
            return None
        elapsed = now - self._ewma_stamp
        if elapsed <= 0.0:
            return self.ewma_latency
        return self.ewma_latency * math.exp(-elapsed / decay)
