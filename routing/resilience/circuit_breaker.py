"""Concurrency limits per cluster (Envoy's circuit breakers): a cap on requests in flight and a cap
on requests waiting for one of those places (in a batch queue, for a connection).

A full breaker rejects at once instead of queueing without bound; the caller answers 503 with
`gateway.core.errors.Overloaded`, which tells clients and other gateways to back off.
"""

from __future__ import annotations


class CircuitBreaker:
    __slots__ = ("active", "max_concurrent", "max_pending", "pending", "rejected", "rejected_pending")

    def __init__(self, max_concurrent: int, max_pending: int) -> None:
        if max_concurrent < 1 or max_pending < 0:
            raise ValueError("max_concurrent must be at least 1 and max_pending at least 0")
        self.max_concurrent = max_concurrent
        self.max_pending = max_pending
        self.active = 0
        self.pending = 0
        self.rejected = 0
        self.rejected_pending = 0

    def try_acquire(self) -> bool:
        """Take an in-flight place; False (and counted) when all are taken."""
        if self.active >= self.max_concurrent:
            self.rejected += 1
            return False
        self.active += 1
        return True

    def release(self) -> None:
        if self.active <= 0:
            raise RuntimeError("circuit breaker released more often than acquired")
        self.active -= 1

    def try_acquire_pending(self) -> bool:
        """Take a waiting place; False (and counted) when the queue is full."""
        if self.pending >= self.max_pending:
            self.rejected_pending += 1
            return False
        self.pending += 1
        return True

    def release_pending(self) -> None:
        if self.pending <= 0:
            raise RuntimeError("circuit breaker pending place released more often than acquired")
        self.pending -= 1
