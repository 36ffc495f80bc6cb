"""How many batches may be in flight to one cluster: `per_endpoint` times its endpoints, shared by
every batch queue that sends there.

This limit is what makes batching adapt to load. While every slot is taken, ready batches wait here
and their queues keep filling, so a loaded cluster gets a few large batches instead of a spray of
batch-1 calls; when a slot frees, the queue that has waited longest takes it (first come, first
served), with all the rows that gathered meanwhile. A cluster with no endpoint still gets one slot,
so its batches fail fast through the balancer rather than wait out their queue timeouts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class BatchSlots:
    __slots__ = ("_endpoint_count", "_per_endpoint", "_waiters", "active")

    def __init__(self, per_endpoint: int, endpoint_count: Callable[[], int]) -> None:
        if per_endpoint < 1:
            raise ValueError("per_endpoint must be at least 1")
        self._per_endpoint = per_endpoint
        self._endpoint_count = endpoint_count
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.active = 0
        """Batches in flight."""

    @property
    def capacity(self) -> int:
        return self._per_endpoint * max(1, self._endpoint_count())

    def free(self) -> bool:
        """Whether a batch could leave now without waiting."""
        return self.active < self.capacity and not self._waiters

    async def acquire(self) -> None:
        """Wait for a slot, in arrival order; `release` it when the batch is answered."""
        if self.free():
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._hand_over()  # the cluster may have gained endpoints since the last release
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as the waiter gave up: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        if self.active <= 0:
            raise RuntimeError("batch slot released more often than acquired")
        self.active -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        capacity = self.capacity
        while self._waiters and self.active < capacity:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.active += 1
                waiter.set_result(None)
