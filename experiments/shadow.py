"""Shadow traffic: copies of primary requests sent to mirror clusters, off the request path.

The data path offers a `ShadowJob` once the primary has answered (the comparison needs both answers).
`ShadowQueue.offer` never waits: when the queue is full the copy is dropped and counted, so a slow
mirror can never slow the primary. A fixed number of workers take jobs, call the injected
`send(cluster, request)`, and hand both answers to `ShadowComparison`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from experiments.config import ShadowConfig
from experiments.outbound import OutboundRequest, Send
from experiments.shadow_compare import ShadowComparison

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One mirrored request with the primary's answer to compare against."""

    mirror: str
    cluster: str
    request: OutboundRequest
    primary_status: int
    primary_body: bytes
    primary_latency_s: float


@dataclass(frozen=True, slots=True)
class QueueStats:
    offered: int
    accepted: int
    dropped: int
    queued: int


class ShadowQueue:
    """A bounded queue of shadow jobs; `offer` never blocks."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("a shadow queue needs a positive capacity")
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(capacity)
        self._offered = 0
        self._dropped = 0

    def offer(self, job: ShadowJob) -> bool:
        """Queue a copy; False (dropped and counted) when full."""
        self._offered += 1
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._dropped += 1
            return False
        return True

    async def take(self) -> ShadowJob:
        return await self._queue.get()

    def stats(self) -> QueueStats:
        return QueueStats(self._offered, self._offered - self._dropped, self._dropped, self._queue.qsize())


class ShadowMirror:
    """A shadow experiment's queue, workers and comparison (start/stop around its life)."""

    def __init__(self, name: str, config: ShadowConfig, send: Send) -> None:
        self.name = name
        self.queue = ShadowQueue(config.queue_size)
        self.comparison = ShadowComparison(
            name, tolerance=config.compare.tolerance, outputs=config.compare.outputs
        )
        self._send = send
        self._workers = config.workers
        self._timeout = config.timeout
        self._tasks: list[asyncio.Task[None]] = []

    def offer(self, job: ShadowJob) -> bool:
        accepted = self.queue.offer(job)
        if not accepted:
            self.comparison.record_drop(job.mirror)
        return accepted

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"shadow-{self.name}-{i}")
                for i in range(self._workers)
            ]

    async def stop(self) -> None:
        """Stop the workers; copies still queued are abandoned (mirrors are best effort)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self) -> None:
        while True:
            job = await self.queue.take()
            await self.run_job(job)

    async def run_job(self, job: ShadowJob) -> bool:
        """Send one copy and compare; True when the answers agree."""
        try:
            status, body, latency = await asyncio.wait_for(
                self._send(job.cluster, job.request), self._timeout
            )
        except (TimeoutError, OSError, ConnectionError) as error:
            _log.debug("shadow %s: mirror %s failed: %r", self.name, job.mirror, error)
            self.comparison.record_failure(job.mirror, job.primary_status)
            return False
        except Exception:  # any other failure of the gateway's send counts against the mirror too
            _log.warning("shadow %s: mirror %s send raised", self.name, job.mirror, exc_info=True)
            self.comparison.record_failure(job.mirror, job.primary_status)
            return False
        return self.comparison.record(
            job.mirror, job.primary_status, job.primary_body, job.primary_latency_s, status, body, latency
        )
