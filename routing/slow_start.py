"""Slow start (Envoy's semantics): an endpoint that just joined or came back takes a reduced weight
that grows over a window, so it warms its caches, JIT and connection pools before a full share.

weight x max(min_weight, (elapsed / window) ** (1 / aggression)); aggression 1 is a linear ramp,
above 1 gives more traffic early, below 1 less.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from routing.endpoints import Endpoint

# Envoy's defaults: a linear ramp that starts at 10% of the weight, so a new endpoint gets some
# traffic at once (and proves it works) without a full share while cold.
DEFAULT_AGGRESSION = 1.0
DEFAULT_MIN_WEIGHT_PERCENT = 10.0
# The weights are recomputed ten times per window: smooth enough that no step is a shock, rare
# enough that rebuilding the balancer costs nothing noticeable.
STEPS_PER_WINDOW = 10


@dataclass(frozen=True, slots=True)
class SlowStart:
    window: float
    aggression: float = DEFAULT_AGGRESSION
    min_weight_percent: float = DEFAULT_MIN_WEIGHT_PERCENT

    def __post_init__(self) -> None:
        if self.window <= 0 or self.aggression <= 0 or not 0 < self.min_weight_percent <= 100:
            raise ValueError("slow start needs window > 0, aggression > 0 and 0 < min weight % <= 100")

    @property
    def step(self) -> float:
        """How often the ramped weights are recomputed while a ramp is under way."""
        return self.window / STEPS_PER_WINDOW

    def weights(self, endpoints: Sequence[Endpoint], now: float) -> list[float] | None:
        """Ramped weights while any endpoint is inside its window; None once no ramp is under way."""
        window = self.window
        if all(now - ep.available_since >= window for ep in endpoints):
            return None
        floor = self.min_weight_percent / 100.0
        exponent = 1.0 / self.aggression
        weights = []
        for ep in endpoints:
            elapsed = now - ep.available_since
            if elapsed >= window:
                weights.append(float(ep.weight))
            else:
                weights.append(ep.weight * max(floor, (max(elapsed, 0.0) / window) ** exponent))
        return weights
