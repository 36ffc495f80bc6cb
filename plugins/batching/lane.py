"""One batch queue (a lane): requests that may share a batch, and the loop that sends them.

The loop is the "full batch or timeout" wait of Triton's dynamic batcher:

    wait until the queue holds a full batch, or its oldest request has waited max_queue_delay
    wait for an in-flight slot of the cluster (more requests keep arriving meanwhile)
    take the batch (priority order, at most the cap) and hand it to the sender

The loop runs as one task while the lane has work, and lingers briefly when it runs dry so that a
steady stream of requests does not create a task per batch; an idle lane ends and is forgotten.
The wait for the oldest member's delay uses a precise timer (`deadline.py`) armed a learnt lead
before the deadline, so a partial batch leaves when its delay is over, not a millisecond later.
Queue timeouts run on loop timers (no task per request); a cancelled member leaves the queue at
once through its future's callback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from gateway.core.errors import GatewayError, ServiceUnavailable, TooManyRequests
from plugins.batching.adaptive import AimdBatchSize
from plugins.batching.config import BatchingConfig
from plugins.batching.deadline import DeadlineTimer, WakeLead, deadline_timer
from plugins.batching.member import Member, MemberState
from plugins.batching.metrics import QueueMetrics
from plugins.batching.queue import MemberQueue
from plugins.batching.slots import BatchSlots
from plugins.batching.upstream import BatchUpstream

log = logging.getLogger("turnout.batching")

# How long an empty lane's task waits for the next request before ending: far longer than the gaps
# between requests under load (milliseconds), so a busy lane keeps its task and adaptive state; short
# enough that a burst of one-off shapes leaves idle tasks for only a second.
LINGER_S: Final = 1.0
# Retry-After (seconds) on overload answers: the smallest whole number HTTP allows; a batch queue
# drains in milliseconds, so a client waiting longer would only leave capacity idle.
RETRY_AFTER: Final = {"Retry-After": "1"}

LaneKey = tuple[str, str, str, str, object]
"""(cluster, path, model, version, signature)."""
Dispatch = Callable[["BatchLane", list[Member]], None]


class BatchLane:
    __slots__ = (
        "_closing",
        "_config",
        "_dispatch",
        "_ended",
        "_finished",
        "_lead",
        "_overload",
        "_preferred_sizes",
        "_queue",
        "_sized_for",
        "_timer",
        "_wake",
        "aimd",
        "key",
        "metrics",
        "slots",
        "task",
        "upstream",
    )

    def __init__(
        self,
        key: LaneKey,
        config: BatchingConfig,
        upstream: BatchUpstream,
        slots: BatchSlots,
        metrics: QueueMetrics,
        dispatch: Dispatch,
        ended: Callable[[BatchLane], None],
    ) -> None:
        self.key = key
        self._config = config
        self.upstream = upstream
        self.slots = slots
        self.metrics = metrics
        self._dispatch = dispatch
        self._ended = ended
        self._queue = MemberQueue(config.priority_levels)
        self._overload: type[GatewayError] = (
            TooManyRequests if config.queue_full_action == "reject_429" else ServiceUnavailable
        )
        self.aimd = AimdBatchSize(config.adaptive, config.max_batch_size) if config.adaptive else None
        if self.aimd is not None:
            metrics.size_limit.set(self.aimd.cap)
        self._sized_for = 0
        self._preferred_sizes: tuple[int, ...] = ()
        self._wake: asyncio.Future[bool] | None = None
        self._timer: DeadlineTimer | None = None
        self._lead = WakeLead(config.max_queue_delay)
        self._closing = False
        self._finished = False
        self.task: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        return self.key[1]

    @property
    def queued(self) -> int:
        return self._queue.count

    @property
    def cap(self) -> int:
        """The most rows a batch may have now: max_batch_size, or the adaptive cap."""
        return self.aimd.cap if self.aimd is not None else self._config.max_batch_size

    def add(self, member: Member, timeout: float | None) -> None:
        """Queue a member; raises the overload error when the queue is full. Starts the loop."""
        queue = self._queue
        if queue.count >= self._config.max_queue_size:
            self.metrics.rejections["queue_full"].inc()
            raise self._overload(
                f"the batch queue of model '{self.key[2]}' is full ({self._config.max_queue_size} "
                "requests waiting); retry shortly",
                headers=RETRY_AFTER,
            )
        queue.push(member)
        self.metrics.depth[member.level].inc()
        member.future.add_done_callback(lambda _: self._withdraw(member))
        if timeout is not None:
            member.timer = asyncio.get_running_loop().call_later(timeout, self._expire, member, timeout)
        if queue.count == 1 or queue.rows >= self._target():
            self._notify()
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"batch-lane-{self.key[2]}")
            self.task.add_done_callback(self._task_done)

    def close(self) -> None:
        """Send what is queued without waiting for more, then end (the batcher is stopping)."""
        self._closing = True
        self._notify()

    def drain(self) -> list[Member]:
        """Take every waiting member out, for the batcher to fail them."""
        members = self._queue.drain()
        for member in members:
            self._left(member)
        return members

    def observe(self, latency: float, rows: int, epoch: int) -> None:
        """A batch of this lane was answered: feed the adaptive cap."""
        if self.aimd is not None:
            self.aimd.observe(latency, rows, epoch)
            self.metrics.size_limit.set(self.aimd.cap)

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue.count and (self._closing or not await self._await_work()):
                    return
                await self._until_ready()
                if not self._queue.count:
                    continue
                await self.slots.acquire()
                members = self._take()
                if not members:
                    self.slots.release()
                    continue
                self._dispatch(self, members)  # the sender releases the slot
        except Exception:
            log.exception("batch lane %s failed; its queued requests are refused", self.key[:4])
        finally:
            self._end()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never runs `_run`'s finally clause.
        self._end()

    def _end(self) -> None:
        """Hand the lane back to the batcher, once. Called as `_run` ends, in the same step, so no
        request can join a lane whose loop has ended."""
        if not self._finished:
            self._finished = True
            if self._timer is not None:
                self._timer.close()
            self._ended(self)

    async def _await_work(self) -> bool:
        await self._sleep(LINGER_S)
        return self._queue.count > 0

    async def _until_ready(self) -> None:
        """Return when a full batch is queued, the oldest member's delay is over, or on closing."""
        queue = self._queue
        max_delay = self._config.max_queue_delay
        lead = self._lead
        while not self._closing and queue.count and queue.rows < self._target():
            oldest = queue.oldest_arrival()
            if oldest is None:
                return
            deadline = oldest + max_delay
            if time.monotonic() >= deadline - lead.seconds:
                return  # within the lead: the timer could not wake us any closer to the deadline
            if await self._sleep_until(deadline - lead.seconds):
                lead.observe(time.monotonic() - deadline)

    async def _sleep_until(self, when: float) -> bool:
        """Sleep until `when` (time.monotonic()) on the precise timer; True when the timer woke it,
        False when `_notify` did."""
        loop = asyncio.get_running_loop()
        timer = self._timer
        if timer is None:
            timer = self._timer = deadline_timer(loop, self._timer_fired)
        wake: asyncio.Future[bool] = loop.create_future()
        self._wake = wake
        timer.arm(when)
        fired = False
        try:
            fired = await wake
            return fired
        finally:
            self._wake = None
            if not fired:
                timer.cancel()  # woken early (or cancelled): the timer is still armed

    async def _sleep(self, seconds: float) -> None:
        """Sleep up to `seconds` on the loop's timer (coarse: for lingering); `_notify` wakes it early."""
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[bool] = loop.create_future()
        self._wake = wake
        timer = loop.call_later(seconds, _resolve, wake, True)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    def _timer_fired(self) -> None:
        if self._wake is not None:
            _resolve(self._wake, True)

    def _notify(self) -> None:
        if self._wake is not None:
            _resolve(self._wake, False)

    def _target(self) -> int:
        """Rows at which a batch goes without waiting: the cap, or the largest preferred size in it."""
        preferred = self._preferred()
        return preferred[-1] if preferred else self.cap

    def _preferred(self) -> tuple[int, ...]:
        """The preferred sizes within the current cap (recomputed only when the cap moves)."""
        cap = self.cap
        if cap != self._sized_for:
            self._sized_for = cap
            self._preferred_sizes = tuple(size for size in self._config.preferred_batch_sizes if size <= cap)
        return self._preferred_sizes

    def _take(self) -> list[Member]:
        members = self._queue.take(self.cap, self._preferred())
        for member in members:
            self._left(member)
        return members

    def _left(self, member: Member) -> None:
        """Bookkeeping for a member leaving the queue by any way."""
        self.metrics.depth[member.level].dec()
        if member.timer is not None:
            member.timer.cancel()
            member.timer = None

    def _withdraw(self, member: Member) -> None:
        if member.future.cancelled() and self._queue.remove(member):
            self._left(member)
            self.metrics.cancelled.inc()

    def _expire(self, member: Member, timeout: float) -> None:
        member.timer = None
        if member.state is not MemberState.QUEUED:
            return
        if self._config.timeout_action == "delay":
            self._queue.delay(member)
            return
        self._queue.remove(member)
        self._left(member)
        self.metrics.rejections["queue_timeout"].inc()
        if not member.future.done():
            member.future.set_exception(
                self._overload(
                    f"the request waited its queue timeout ({timeout:g}s) in the batch queue of model "
                    f"'{self.key[2]}' without being sent; retry later or allow a longer timeout",
                    headers=RETRY_AFTER,
                )
            )


def _resolve(future: asyncio.Future[bool], by_timer: bool) -> None:
    if not future.done():
        future.set_result(by_timer)
