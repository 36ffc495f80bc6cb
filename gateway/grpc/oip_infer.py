"""What a route's `validate` and `batching` filters do to an OIP v2 gRPC `ModelInfer` call.

Both filters were written for REST bodies; on a gRPC call their request phase passes, and the relay
asks this module instead, after the request filters and before the upstream:

- **Validation** (`validate: {oip_v2: true}`): the message is decoded with the REST codec's checks
  (each input's raw contents or typed contents against its shape and datatype), then checked by the
  filter itself (`OipValidateFilter.check_inference`) against the model's signature: the same
  configured signatures, metadata cache, `require_all_inputs` and `strict`. Without a
  `metadata_from` of its own, the filter is given a fetcher that asks the route's cluster
  `ModelMetadata` over gRPC. A refusal names the tensor and becomes `INVALID_ARGUMENT`.
- **Batching** (`batching`): the call joins the filter's kind of queue, a `Batcher` built from the
  filter's config and metrics, one per filter and cluster, whose batches go to the cluster over the
  relay's HTTP/2 channels (`oip_batch_format.py` merges and splits the messages). A call that
  cannot be merged goes upstream alone, as without batching. The batch's call carries the
  batcher's headers as metadata (its request id, its members' ids) and, with tracing on, the
  traceparent of its attempt span; the load report in its answer feeds the cluster's balancer.

Routes without these filters never reach this module, and their calls are never decoded.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any

import grpc

from gateway.core.errors import BadRequest, GatewayError, ServiceUnavailable
from gateway.core.filters import Response
from gateway.grpc.metadata import Metadata, answer_metadata, outgoing_metadata
from gateway.grpc.oip_batch_format import GRPC_CONTENT_TYPE, GrpcBatchFormat, mergeable, text_metadata
from gateway.grpc.oip_messages import GrpcMetadataFetcher, codec, pb
from gateway.grpc.status import status_for_code
from plugins.batching import (
    BatchAnswer,
    Batcher,
    BatchingFilter,
    BatchUpstream,
    UpstreamAnswer,
    UpstreamReply,
)
from plugins.batching.payload import EncodedBatch
from plugins.batching.upstream import Pairs
from plugins.validate import OipValidateFilter

if TYPE_CHECKING:
    from collections.abc import Mapping

    from gateway.core.trace import RequestTrace
    from gateway.grpc.channels import UpstreamChannels
    from gateway.mesh.exchange import MeshExchange
    from gateway.route import CompiledRoute
    from gateway.runtime import Runtime
    from routing.endpoints import Endpoint

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
# Cluster protocols that are REST for sure; "http" (the default) may be gRPC endpoints.
_REST_PROTOCOLS = frozenset(("oip_v2", "kserve_v1", "openai"))
# A worker's load report, in its answer's metadata as in its HTTP headers.
_QUEUE_DEPTH = "x-turnout-queue-depth"
_INFLIGHT = "x-turnout-inflight"


class UpstreamStatus(GatewayError):
    """A batched call the upstream answered with a non-OK status: each member gets that status,
    and the upstream's trailing metadata."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: Metadata = ()) -> None:
        super().__init__(details)
        self.args = (code, details, trailers)  # each member gets a copy (copy.copy rebuilds it from these)
        self.grpc_code = code
        self.status = status_for_code(code)
        self.trailers = trailers


@dataclass(frozen=True, slots=True)
class InferFilters:
    """The route's filters that act on `ModelInfer` messages; None where it has none."""

    validate: OipValidateFilter | None
    batching: BatchingFilter | None


_NONE = InferFilters(None, None)


def infer_filters(route: CompiledRoute) -> InferFilters:
    """A few isinstance checks over the route's filters: cheaper than a cache keyed by route."""
    validate = batching = None
    for filter_ in route.filters.filters:
        if isinstance(filter_, OipValidateFilter):
            validate = filter_
        elif isinstance(filter_, BatchingFilter):
            batching = filter_
    return _NONE if validate is None and batching is None else InferFilters(validate, batching)


class InferStage:
    """Validation and batching of `ModelInfer` calls for every route of one front door."""

    __slots__ = ("_batchers", "_channels", "_fetching", "_format", "_runtime")

    def __init__(self, runtime: Callable[[], Runtime], channels: UpstreamChannels) -> None:
        self._runtime = runtime
        self._channels = channels
        self._format = GrpcBatchFormat()
        # Per filter object: a reload that rebuilds a filter drops its batchers and fetcher with it.
        self._batchers: weakref.WeakKeyDictionary[BatchingFilter, dict[str, Batcher]] = (
            weakref.WeakKeyDictionary()
        )
        self._fetching: weakref.WeakSet[OipValidateFilter] = weakref.WeakSet()

    async def validate(
        self, exchange: MeshExchange, check: OipValidateFilter, message: bytes
    ) -> Response | None:
        """The filter's refusal of this call (400 naming the tensor, 404 for an unknown model), or None."""
        if not check.has_metadata_source and check not in self._fetching:
            self._fetching.add(check)
            cluster = exchange.runtime.clusters[exchange.ctx.cluster]
            if cluster.protocol not in _REST_PROTOCOLS:  # else the gateway's own fetcher is right
                fetcher = GrpcMetadataFetcher(
                    self._runtime, self._channels, cluster.name, cluster.request_timeout
                )
                check.set_metadata_fetcher(fetcher)
        try:
            model, version, request, _ = codec().request_from_proto(
                pb().ModelInferRequest.FromString(message)
            )
        except BadRequest as error:
            return Response.error(400, error.message, error.code)
        except Exception:  # protobuf's DecodeError: begin_call read only the top level
            return Response.error(400, "malformed ModelInferRequest", "bad_request")
        refusal: Response | None = await check.check_inference(request, model, version)
        return refusal

    async def batch(
        self, exchange: MeshExchange, layer: BatchingFilter, path: str, message: bytes
    ) -> BatchAnswer | None:
        """This call's share of a batched answer, or None when it cannot be merged (it goes alone).
        Raises a `GatewayError` (a full queue, the upstream's status) for the caller."""
        member: Any = mergeable(pb().ModelInferRequest.FromString(message))
        if member is None:
            return None
        ctx = exchange.ctx
        endpoint = exchange.endpoint
        if endpoint is not None:  # the batch picks its own endpoint: this call holds none
            exchange.runtime.clusters[ctx.cluster].endpoints.on_finish(endpoint)
            exchange.endpoint = None
            ctx.endpoint = ""
        original = EncodedBatch(message, GRPC_CONTENT_TYPE, {})
        pending = self._batcher(layer, exchange).submit(ctx, member, original, path, self._format)
        try:
            answer = await pending
        except asyncio.CancelledError:
            pending.cancel()  # the client left while queued: it leaves the queue too
            raise
        ctx.upstream_latency = answer.upstream_latency
        ctx.state[layer.name] = {
            "rows": answer.rows,
            "batch_rows": answer.batch_rows,
            "queue_delay_ms": round(answer.queue_delay * 1000, 3),
            "batch_request_id": answer.batch_request_id,
        }
        return answer

    def _batcher(self, layer: BatchingFilter, exchange: MeshExchange) -> Batcher:
        by_cluster = self._batchers.setdefault(layer, {})
        cluster = exchange.ctx.cluster
        batcher = by_cluster.get(cluster)
        if batcher is None:
            route = exchange.route
            timeout = route.timeout if route is not None and route.timeout is not None else None
            if timeout is None:
                timeout = exchange.runtime.clusters[cluster].request_timeout
            upstream = _GrpcClusterSender(self._runtime, self._channels, cluster, timeout)
            batcher = Batcher(
                layer.config,
                {cluster: BatchUpstream(upstream.send, upstream.endpoint_count, None, upstream.send_traced)},
                layer.metrics,
            )
            by_cluster[cluster] = batcher
        return batcher

    async def close(self) -> None:
        """Send what is queued and wait for the answers (the batcher's drain), then forget."""
        batchers = [batcher for by_cluster in self._batchers.values() for batcher in by_cluster.values()]
        self._batchers.clear()
        for batcher in batchers:
            await batcher.stop()


class _GrpcClusterSender:
    """One batch to an endpoint of the cluster, picked by its balancer, on the relay's channels."""

    __slots__ = ("_channels", "_cluster", "_runtime", "_timeout")

    def __init__(
        self, runtime: Callable[[], Runtime], channels: UpstreamChannels, cluster: str, timeout: float
    ) -> None:
        self._runtime = runtime
        self._channels = channels
        self._cluster = cluster
        self._timeout = timeout

    def endpoint_count(self) -> int:
        cluster = self._runtime().clusters.get(self._cluster)
        return max(1, len(cluster.endpoints.eligible)) if cluster is not None else 1

    async def send(
        self, path: str, body: bytes, content_type: str, headers: Mapping[str, str]
    ) -> UpstreamReply:
        return await self._call(path, body, headers, None)

    async def send_traced(
        self, path: str, body: bytes, content_type: str, headers: Mapping[str, str], trace: RequestTrace
    ) -> UpstreamReply:
        return await self._call(path, body, headers, trace)

    async def _call(
        self, path: str, body: bytes, headers: Mapping[str, str], trace: RequestTrace | None
    ) -> UpstreamReply:
        """The batch's call; its metadata is the batcher's headers for it (the request id, the
        members' ids) and, with a `trace`, the traceparent of the attempt's span."""
        cluster = self._runtime().clusters.get(self._cluster)
        endpoint = cluster.endpoints.pick(None) if cluster is not None else None
        if cluster is None or endpoint is None:
            raise ServiceUnavailable(f"no healthy endpoint in cluster '{self._cluster}'")
        endpoints = cluster.endpoints
        span = trace.attempt(endpoint.address, 0) if trace is not None else None
        metadata = outgoing_metadata(headers, ())
        if span is not None:
            metadata += (("traceparent", span.traceparent),)
        endpoints.on_start(endpoint)
        started = monotonic()
        call: Any = self._channels.get(endpoint.address).unary_unary(path)(
            body, metadata=metadata, timeout=self._timeout
        )
        try:
            reply: bytes = await call
        except grpc.aio.AioRpcError as error:
            endpoints.on_finish(endpoint)
            code = error.code()
            if status_for_code(code) >= 500:
                endpoints.on_failure(endpoint, monotonic())
            no_answer = code == grpc.StatusCode.UNAVAILABLE and not error.trailing_metadata()
            if span is not None:
                if no_answer:
                    span.fail(error.details() or code.name)
                else:
                    span.set_status(status_for_code(code))
                span.end()
            if no_answer:
                raise ServiceUnavailable(
                    f"no upstream of cluster '{self._cluster}' could take the batch"
                ) from None
            trailers = answer_metadata(error.trailing_metadata())
            raise UpstreamStatus(code, error.details() or code.name, trailers) from None
        except asyncio.CancelledError:
            call.cancel()
            endpoints.on_finish(endpoint)
            if span is not None:
                span.fail("cancelled")
                span.end()
            raise
        now = monotonic()
        endpoints.on_finish(endpoint)
        endpoints.on_success(endpoint, now - started, now)
        if span is not None:
            span.set_status(200)
            span.end()
        # The upstream's metadata, for each member (`oip_batch_format.py`; the batcher's rule), and
        # the worker's load report for the balancer, as an unbatched call's initial metadata gives it.
        initial = text_metadata(await call.initial_metadata())
        trailing = text_metadata(await call.trailing_metadata())
        note_load_report(endpoint, initial)
        note_load_report(endpoint, trailing)
        return UpstreamAnswer(200, initial, reply, trailing)


def note_load_report(endpoint: Endpoint, pairs: Pairs) -> None:
    """The worker's queue depth and in-flight count (`x-turnout-queue-depth`, `x-turnout-inflight`)
    on the endpoint the least-queue balancer reads."""
    for key, value in pairs:
        if key == _QUEUE_DEPTH and value.isdigit():
            endpoint.queue_depth = int(value)
        elif key == _INFLIGHT and value.isdigit():
            endpoint.reported_inflight = int(value)
