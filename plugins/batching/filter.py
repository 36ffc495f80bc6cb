"""The batching filter: an upstream layer chosen per route like any filter.

Its request phase does nothing; the data path sees `forward` and sends the route's requests through
it instead of proxying them one by one: the body is decoded (a malformed one gets its 400 here,
before it can join a batch), submitted to the batcher, and the member's share of the batched answer
comes back as a `Response` that the response filters (a cache store, for instance) see as usual.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, ClusterSender, Filter, Response
from gateway.core.protocols.binary import HEADER_LENGTH
from gateway.core.protocols.kserve_v1 import V1Request, decode_v1_request
from gateway.core.protocols.oip_v2 import BINARY_CONTENT_TYPE, JSON_CONTENT_TYPE, InferRequest, decode_request
from gateway.core.trace import SpanValue
from plugins.batching.batcher import Batcher
from plugins.batching.config import BatchingConfig
from plugins.batching.metrics import BatchingMetrics
from plugins.batching.payload import EncodedBatch
from plugins.batching.upstream import BatchUpstream, SendTraced

_HEADER_LENGTH = HEADER_LENGTH.lower()


class BatchingFilter(Filter):
    name = "batching"
    needs_request_body = True
    # Built from its YAML options alone: a reload that leaves them (and the route) unchanged keeps
    # this filter, state included (see gateway/runtime.py, `_chain_key`).
    keeps_state_across_reloads = True

    def __init__(self, config: BatchingConfig, build: BuildContext) -> None:
        self.config = config
        self.metrics = BatchingMetrics(build.registry)
        self._upstreams: dict[str, BatchUpstream] = {}
        self._batcher: Batcher | None = None

    def attach_upstream(self, cluster: str, upstream: ClusterSender) -> None:
        """The gateway gives each cluster this route can reach its batch sender (before `start`)."""
        # The gateway's sender (gateway/batch_upstream.py) also records the attempts in a trace.
        send_traced: SendTraced | None = getattr(upstream, "send_traced", None)
        self._upstreams[cluster] = BatchUpstream(
            upstream.send, upstream.endpoint_count, upstream.get, send_traced
        )
        if self._batcher is not None:  # a reload kept this filter: the servers may have changed
            self._batcher.read_extensions_again()

    async def start(self) -> None:
        self._batcher = Batcher(self.config, self._upstreams, self.metrics)

    async def stop(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()

    async def forward(self, ctx: RequestContext, path: str) -> Response:
        """Send this request as part of a batch to `ctx.cluster` at `path` (the path the upstream
        sees); the answer is this member's share."""
        assert self._batcher is not None, "the batching filter was not started"
        body = ctx.body or b""
        request: InferRequest | V1Request
        if ctx.path.endswith(":predict"):
            request = decode_v1_request(body)
            original = EncodedBatch(body, JSON_CONTENT_TYPE, {})
        else:
            header_length = ctx.headers.get(_HEADER_LENGTH)
            request = decode_request(body, header_length)
            content_type = ctx.headers.get("content-type") or (
                BINARY_CONTENT_TYPE if header_length else JSON_CONTENT_TYPE
            )
            original = EncodedBatch(
                body, content_type, {} if header_length is None else {HEADER_LENGTH: header_length}
            )
        submitted = time.monotonic()
        pending = self._batcher.submit(ctx, request, original, path)
        try:
            answer = await pending
        except asyncio.CancelledError:
            pending.cancel()  # the client left while queued: it leaves the queue too
            raise
        trace = ctx.trace
        if trace is not None:
            dispatched = submitted + answer.queue_delay
            sizes: dict[str, SpanValue] = {
                "turnout.batch.id": answer.batch_id,
                "turnout.batch.rows": answer.rows,
                "turnout.batch.batch_rows": answer.batch_rows,
                "turnout.batch.members": answer.batch_members,
                "turnout.batch.request_id": answer.batch_request_id,
            }
            trace.span("batch queue wait", submitted, dispatched, sizes)
            trace.span("batch upstream call", dispatched, dispatched + answer.upstream_latency, sizes)
        ctx.upstream_latency = answer.upstream_latency
        ctx.state[self.name] = {
            "rows": answer.rows,
            "batch_rows": answer.batch_rows,
            "queue_delay_ms": round(answer.queue_delay * 1000, 3),
            "batch_request_id": answer.batch_request_id,
        }
        return Response(answer.status, list(answer.headers), answer.body)


class BatchingFactory:
    config_model: type[BaseModel] = BatchingConfig

    def __call__(self, config: BatchingConfig, build: BuildContext) -> Filter:
        return BatchingFilter(config, build)


FACTORY = BatchingFactory()
