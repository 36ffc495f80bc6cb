"""The dynamic batcher: merges compatible inference requests into one upstream call per batch.

    batcher = Batcher(config, {"fraud-v1": BatchUpstream(send, endpoint_count)}, metrics)
    pending = batcher.submit(ctx, request)     # checks at once: BadRequest, queue full
    answer = await pending                     # BatchAnswer: this member's status, headers, body
    ...
    await batcher.stop()                       # sends what is queued, waits for the answers

Requests queue per lane: (cluster, path, model, version, compatibility signature), taken from the
request context (`ctx.cluster` must name one of the upstreams) and the request itself. Each lane
runs the "full batch or timeout" loop of `lane.py`; the batches of all lanes of one cluster share
its in-flight slots (`slots.py`). The batcher starts no task until the first request, and `stop`
ends every task it started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Final

from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest, ServiceUnavailable
from gateway.core.protocols.oip_v2 import InferRequest
from plugins.batching.config import BatchingConfig
from plugins.batching.extensions import ServerExtensions
from plugins.batching.lane import BatchLane, LaneKey
from plugins.batching.member import BatchAnswer, Member, PendingRequest, fail_members
from plugins.batching.metrics import BatchingMetrics
from plugins.batching.oip_format import OipBatchFormat
from plugins.batching.payload import BatchableRequest, BatchFormat, EncodedBatch
from plugins.batching.policy import QueuePolicy
from plugins.batching.sender import Batch, send_batch, settle
from plugins.batching.slots import BatchSlots
from plugins.batching.upstream import BatchUpstream
from plugins.batching.v1_format import V1BatchFormat

# How long `stop` lets queued requests be sent and in-flight batches be answered before cancelling:
# a few batch latencies of even a slow model, inside a typical orchestrator's termination grace.
DRAIN_TIMEOUT_S: Final = 5.0


class Batcher:
    __slots__ = (
        "_batch_ids",
        "_closing",
        "_config",
        "_extensions",
        "_in_flight",
        "_lanes",
        "_metrics",
        "_oip",
        "_policy",
        "_slots",
        "_upstreams",
        "_v1",
    )

    def __init__(
        self,
        config: BatchingConfig,
        upstreams: Mapping[str, BatchUpstream],
        metrics: BatchingMetrics | None = None,
    ) -> None:
        self._config = config
        self._upstreams = dict(upstreams)
        self._metrics = metrics or BatchingMetrics(None)
        self._policy = QueuePolicy(config)
        self._oip = OipBatchFormat(config.upstream_binary_tensors)
        self._v1 = V1BatchFormat()
        self._extensions: dict[str, ServerExtensions] = {}
        self.read_extensions_again()
        per_endpoint = config.max_inflight_batches_per_endpoint
        self._slots = {
            name: BatchSlots(per_endpoint, upstream.endpoint_count) for name, upstream in upstreams.items()
        }
        self._lanes: dict[LaneKey, BatchLane] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._batch_ids = 0
        self._closing = False

    def read_extensions_again(self) -> None:
        """Binary batches only to servers that say they take them (GET /v2), read once per cluster
        and again from here on (a config reload calls this: the servers may have changed)."""
        if not self._config.upstream_binary_tensors:
            return
        self._extensions = {
            name: ServerExtensions(upstream.get)
            for name, upstream in self._upstreams.items()
            if upstream.get is not None
        }

    async def __aenter__(self) -> Batcher:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def queued(self) -> int:
        """Requests waiting in every queue."""
        return sum(lane.queued for lane in self._lanes.values())

    @property
    def batches_in_flight(self) -> int:
        return len(self._in_flight)

    def submit(
        self,
        ctx: RequestContext,
        request: BatchableRequest,
        original: EncodedBatch | None = None,
        path: str | None = None,
        batch_format: BatchFormat | None = None,
    ) -> PendingRequest:
        """Queue one parsed request (OIP v2 `InferRequest` or KServe `V1Request`) for batching.
        `original`, the request as its caller sent it, lets a batch of this request alone go out
        unchanged (the common case at low load) instead of being re-encoded both ways.
        `batch_format` merges and splits requests of another wire format (the gRPC front door's
        protobuf messages); by default the request's type picks OIP v2 REST or KServe V1.

        Raises at once, before the request joins any queue: BadRequest when it cannot be batched
        (no batch dimension, inputs disagreeing on it, bad priority or timeout header), the overload
        error (429 or 503, with Retry-After) when its queue is full, ServiceUnavailable when stopping.
        """
        model = ctx.model or ""
        if self._closing:
            self._metrics.rejected(model, ctx.cluster, "stopping")
            raise ServiceUnavailable("the gateway is stopping; retry on another replica")
        upstream = self._upstreams.get(ctx.cluster)
        if upstream is None:
            raise LookupError(f"the batcher has no upstream for cluster '{ctx.cluster}'")
        try:
            chosen = batch_format or (self._oip if isinstance(request, InferRequest) else self._v1)
            payload = chosen.prepare(request, original)
            level = self._policy.level(ctx)
            timeout = self._policy.timeout(ctx)
        except BadRequest:
            self._metrics.rejected(model, ctx.cluster, "invalid")
            raise
        if path is None:  # the path the upstream sees, when the caller knows it (a route's rewrite)
            path = ctx.path
        key: LaneKey = (ctx.cluster, path, model, ctx.model_version or "", payload.signature)
        lane = self._lanes.get(key)
        if lane is None:
            lane = BatchLane(
                key,
                self._config,
                upstream,
                self._slots[ctx.cluster],
                self._metrics.for_queue(model, ctx.cluster, self._config.priority_levels),
                self._dispatch,
                self._lane_ended,
            )
            self._lanes[key] = lane
        future: asyncio.Future[BatchAnswer] = asyncio.get_running_loop().create_future()
        member = Member(payload, level - 1, time.monotonic(), future, ctx.trace, ctx.request_id)
        lane.add(member, timeout)
        return PendingRequest(member)

    async def stop(self, drain_timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Refuse new requests, send the queued ones at once, and wait for their answers; after
        `drain_timeout` seconds, cancel what is left (its callers get 503)."""
        self._closing = True
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.close()
        deadline = time.monotonic() + drain_timeout
        lane_tasks = {lane.task for lane in lanes if lane.task is not None}
        for tasks in (lane_tasks, self._in_flight):
            pending = {task for task in tasks if not task.done()}
            if pending:
                _, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def _dispatch(self, lane: BatchLane, members: list[Member]) -> None:
        now = time.monotonic()
        rows = 0
        metrics = lane.metrics
        for member in members:
            rows += member.rows
            metrics.queue_delay.observe(now - member.arrived)
        metrics.batch_size.observe(rows)
        metrics.batch_members.observe(len(members))
        self._batch_ids += 1
        epoch = lane.aimd.epoch if lane.aimd is not None else 0
        batch = Batch(self._batch_ids, members, rows, now, epoch, self._extensions.get(lane.key[0]))
        task = asyncio.get_running_loop().create_task(send_batch(lane, batch), name=f"batch-{batch.id}")
        self._in_flight.add(task)
        task.add_done_callback(lambda done: self._batch_done(done, lane, batch))

    def _batch_done(self, task: asyncio.Task[None], lane: BatchLane, batch: Batch) -> None:
        self._in_flight.discard(task)
        settle(lane, batch)

    def _lane_ended(self, lane: BatchLane) -> None:
        if self._lanes.get(lane.key) is lane:
            del self._lanes[lane.key]
        leftover = lane.drain()
        if leftover:
            lane.metrics.rejections["stopping"].inc(len(leftover))
            fail_members(
                leftover, ServiceUnavailable("the batcher stopped before this request was sent; retry")
            )
