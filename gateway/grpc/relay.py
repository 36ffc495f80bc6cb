"""Relays one gRPC call to the endpoint its decision chose, as raw bytes.

Messages are never deserialized: the front door and the upstream client both pass `bytes`, so a
tensor crosses the gateway as the protobuf the client wrote. Unary OIP v2 methods use a unary
relay whose upstream call goes out on the gateway's own HTTP/2 client (`h2_client.py`, a fraction
of grpcio's channel's cost per call); everything else uses a stream relay on grpcio's channels,
which carries unary, client-streaming, server-streaming and bidirectional calls alike, message by
message with grpcio's flow control as backpressure. Status, details, initial and trailing metadata
come back as the upstream sent them; the client's deadline (capped by the route's timeout) goes
out with the call; a client that cancels cancels the upstream call.

The upstream call carries the call's request id, x-forwarded-for and trace context as a REST
request's head does (`metadata.py`, `relayed_metadata`): where tracing is on, each attempt is a
client span whose traceparent goes out with it; where it is off, that costs one `ctx.trace is None`
test a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, TypeAlias

import grpc

from gateway.core.errors import GatewayError
from gateway.core.filters import Response
from gateway.grpc.answer_sampling import sample_reply
from gateway.grpc.call import answer_message, begin_call
from gateway.grpc.h2_client import CallError
from gateway.grpc.metadata import Metadata, answer_metadata, relayed_metadata
from gateway.grpc.oip_batch_format import GRPC_CONTENT_TYPE, member_metadata
from gateway.grpc.oip_infer import MODEL_INFER, InferFilters, InferStage, UpstreamStatus, infer_filters
from gateway.grpc.retry import retry_elsewhere, retry_policy
from gateway.grpc.status import code_for_status, status_for_code
from gateway.mesh.exchange import Forward, MeshExchange, error_response

if TYPE_CHECKING:
    from gateway.core.trace import AttemptSpan
    from gateway.grpc.channels import UpstreamChannels
    from gateway.grpc.metrics import GrpcMetrics
    from gateway.grpc.tls import PeerSubjects
    from gateway.runtime import Runtime
    from plugins.batching import BatchAnswer

# grpcio's servicer context (untyped: grpcio ships no annotations for grpc.aio).
Context: TypeAlias = grpc.aio.ServicerContext

log = logging.getLogger("turnout.grpc")

# What ctx.status records for a client that went away (nginx's "client closed request").
CLIENT_CLOSED = 499
NOT_FOUND = 404


class Relay:
    """The handlers of the front door; shared by every call, holding no per-call state."""

    __slots__ = ("_channels", "_infer", "_metrics", "_runtime", "_subjects")

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        channels: UpstreamChannels,
        metrics: GrpcMetrics,
        subjects: PeerSubjects | None = None,
        infer: InferStage | None = None,
    ) -> None:
        """`subjects`: the port verifies client certificates, whose subjects become `ctx.tls_subject`;
        `infer`: the ModelInfer stage shared with the front door's other relay (one set of batch
        queues whichever port a call came in on); by default one of its own."""
        self._runtime = runtime
        self._channels = channels
        self._metrics = metrics
        self._subjects = subjects
        self._infer = infer if infer is not None else InferStage(runtime, channels)

    async def _decide(
        self, path: str, context: Context, first: bytes | None, unary: bool = False
    ) -> tuple[MeshExchange, Forward | Response, Metadata, float | None]:
        """Match, filter and pick the endpoint; aborts the call (after `finish`) with the answer
        when a filter or the gateway answers instead of the upstream. A unary call's message is the
        filters' `ctx.body` when one reads bodies, and a filter's own successful answer with a
        message (a cache hit) comes back as a `Response` to send."""
        runtime = self._runtime()
        try:
            subjects = self._subjects
            subject = subjects.of(context.auth_context()) if subjects is not None else None
            metadata = context.invocation_metadata() or ()
            exchange, binary = begin_call(runtime, path, metadata, context.peer(), first, subject)
        except GatewayError as error:  # a malformed request message (BadRequest), before any route
            await context.abort(code_for_status(error.status), error.message)
            raise
        route = exchange.route
        if unary and route is not None and route.filters.needs_request_body:
            # grpcio keeps the call's content-type to itself; the body rules read it from here.
            exchange.ctx.body = first
            exchange.ctx.headers["content-type"] = GRPC_CONTENT_TYPE
        decision = await exchange.decide()
        if isinstance(decision, Response):
            if unary and 200 <= decision.status < 300 and decision.body is not None:
                return exchange, decision, (), None
            await _answer(exchange, self._metrics, decision, context)
        assert isinstance(decision, Forward)
        route = exchange.route
        cluster = runtime.clusters[decision.cluster]
        limit = route.timeout if route is not None and route.timeout is not None else cluster.request_timeout
        remaining = context.time_remaining()
        timeout = limit if remaining is None else min(limit, remaining)
        ctx = exchange.ctx
        metadata = relayed_metadata(ctx.headers, binary, ctx.request_id, ctx.trace is not None, ctx.client_ip)
        return exchange, decision, metadata, timeout

    async def unary(self, path: str, request: bytes, context: Context) -> bytes:
        exchange, forward, metadata, timeout = await self._decide(path, context, request, unary=True)
        ctx = exchange.ctx
        ctx.bytes_in = len(request)
        if isinstance(forward, Response):  # a filter's answer, such as a cache hit
            await _send_head(exchange, self._metrics, forward.headers, context, forward.body, forward.status)
            return self._done(exchange, forward.body or b"")
        if ctx.body is not None:  # a filter may have rewritten the message
            request = ctx.body
        route = exchange.route
        if path == MODEL_INFER and route is not None:
            stage = infer_filters(route)
            if stage.validate is not None or stage.batching is not None:
                answer = await self._infer_filters(exchange, stage, path, request, context)
                if answer is not None:  # the upstream's metadata too, as a call alone gets it
                    initial, trailing = member_metadata(answer)
                    await _send_head(exchange, self._metrics, initial, context, answer.body)
                    if trailing := answer_metadata(trailing):
                        context.set_trailing_metadata(trailing)
                    return self._done(exchange, answer.body)
        address = forward.endpoint
        retries = 0
        trace = ctx.trace
        span: AttemptSpan | None = None
        try:
            while True:
                sent = metadata
                if trace is not None:  # the attempt's span, named by the traceparent it sends
                    span = trace.attempt(address, retries)
                    sent = (*metadata, ("traceparent", span.traceparent))
                try:
                    reply = await self._channels.unary(address, path, request, sent, timeout)
                    if span is not None:
                        span.set_status(200)
                        span.end()
                    break
                except CallError as error:
                    if span is not None:
                        _end_failed(span, error.code, bool(error.trailing))
                    other = None
                    if error.code == grpc.StatusCode.UNAVAILABLE:
                        other = retry_elsewhere(exchange, self._runtime())
                    if other is None:
                        await _upstream_failed(
                            exchange, self._metrics, error.code, error.details, error.trailing, context
                        )
                        raise
                    address, retries = other, retries + 1
                except asyncio.CancelledError:  # the client left: the upstream stream was reset
                    if span is not None:
                        span.fail("cancelled")
                        span.end()
                    _finish(
                        exchange,
                        self._metrics,
                        CLIENT_CLOSED,
                        grpc.StatusCode.CANCELLED,
                        "the client cancelled",
                    )
                    raise
        finally:
            policy = retry_policy(exchange, self._runtime()) if retries else None
            if policy is not None:  # the retries held places in its budget until the call ended
                for _ in range(retries):
                    policy.budget.release_retry()
        await _send_head(exchange, self._metrics, reply.initial, context, reply.message)
        trailing = answer_metadata(reply.trailing)
        if trailing:
            context.set_trailing_metadata(trailing)
        if route is not None and route.filters.answer_samplers:  # a monitor's sample
            sample_reply(ctx, route.filters, reply.message)
        return self._done(exchange, reply.message)

    def _done(self, exchange: MeshExchange, reply: bytes) -> bytes:
        exchange.ctx.bytes_out = len(reply)
        _finish(exchange, self._metrics, 200, grpc.StatusCode.OK)
        return reply

    async def _infer_filters(
        self, exchange: MeshExchange, stage: InferFilters, path: str, request: bytes, context: Context
    ) -> BatchAnswer | None:
        """Validation, then batching, of a ModelInfer call (`oip_infer.py`): the batched answer,
        None when the call goes upstream alone; a refusal aborts the call."""
        try:
            if stage.validate is not None:
                refusal = await self._infer.validate(exchange, stage.validate, request)
                if refusal is not None and refusal.status == NOT_FOUND:
                    # The model is unknown upstream: NOT_FOUND, as the server itself would answer
                    # (a 404 is otherwise UNIMPLEMENTED, for a call no route takes).
                    message = answer_message(refusal)
                    _finish(exchange, self._metrics, NOT_FOUND, grpc.StatusCode.NOT_FOUND, message)
                    await context.abort(grpc.StatusCode.NOT_FOUND, message)
                if refusal is not None:
                    exchange.ctx.error = answer_message(refusal)
                    await _answer(exchange, self._metrics, refusal, context)
            if stage.batching is not None:
                return await self._infer.batch(exchange, stage.batching, path, request)
        except UpstreamStatus as error:  # the batch's upstream answered this status to every member
            _finish(exchange, self._metrics, error.status, error.grpc_code, error.message)
            await context.abort(error.grpc_code, error.message, error.trailers)
        except GatewayError as error:  # a full queue, no endpoint, an unsplittable answer
            await _answer(exchange, self._metrics, error_response(error), context)
        except asyncio.CancelledError:
            _finish(exchange, self._metrics, CLIENT_CLOSED, grpc.StatusCode.CANCELLED, "the client cancelled")
            raise
        except grpc.aio.AbortError:  # a refusal above, already finished
            raise
        except Exception as exc:  # a bug, or the OIP classes missing (the workers extra): contained
            log.exception("validating or batching a ModelInfer call failed")
            failure = f"{type(exc).__name__}: {exc}"
            _finish(exchange, self._metrics, 500, grpc.StatusCode.INTERNAL, failure)
            await context.abort(grpc.StatusCode.INTERNAL, "the gateway failed to validate or batch this call")
        return None

    async def stream(
        self, path: str, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        # The model of ModelStreamInfer is in its first message: read it before deciding.
        first = await anext(requests, None) if path in _FIRST_MESSAGE_ROUTES else None
        exchange, forward, metadata, timeout = await self._decide(path, context, first)
        assert isinstance(forward, Forward)  # only unary calls are answered by a filter's message
        ctx = exchange.ctx

        async def upstream_requests() -> AsyncIterator[bytes]:
            if first is not None:
                ctx.bytes_in += len(first)
                yield first
            async for message in requests:
                ctx.bytes_in += len(message)
                yield message

        trace = ctx.trace
        span = trace.attempt(forward.endpoint, 0) if trace is not None else None
        if span is not None:
            metadata += (("traceparent", span.traceparent),)
        call = self._channels.get(forward.endpoint).stream_stream(path)(
            upstream_requests(), metadata=metadata, timeout=timeout
        )
        sent = 0
        try:
            initial = await call.initial_metadata()
            # A call that failed before any message (a trailers-only answer, or no connection) is
            # done by now: the loop below raises its error, and the endpoint is charged once.
            if not call.done() or await call.code() == grpc.StatusCode.OK:
                await _send_head(exchange, self._metrics, initial, context)
            async for reply in call:
                sent += len(reply)
                yield reply
        except grpc.aio.AioRpcError as error:
            exchange.ctx.bytes_out = sent
            if span is not None:
                _end_failed(span, error.code(), bool(error.trailing_metadata()))
            await _upstream_failed(
                exchange, self._metrics, error.code(), error.details(), error.trailing_metadata(), context
            )
            raise
        except (asyncio.CancelledError, GeneratorExit):
            call.cancel()
            if span is not None:
                span.fail("cancelled")
                span.end()
            _finish(exchange, self._metrics, CLIENT_CLOSED, grpc.StatusCode.CANCELLED, "the client cancelled")
            raise
        exchange.ctx.bytes_out = sent
        code = await call.code()
        if span is not None:
            span.set_status(status_for_code(code))
            span.end()
        context.set_trailing_metadata(answer_metadata(await call.trailing_metadata()))
        if code != grpc.StatusCode.OK:
            details = await call.details()
            _finish(exchange, self._metrics, status_for_code(code), code, details)
            await context.abort(code, details)
        _finish(exchange, self._metrics, 200, grpc.StatusCode.OK)


# Only ModelStreamInfer names its model in its messages among the streaming methods.
_FIRST_MESSAGE_ROUTES = frozenset(("/inference.GRPCInferenceService/ModelStreamInfer",))


def _end_failed(span: AttemptSpan, code: grpc.StatusCode, answered: bool) -> None:
    """An attempt that ended in a non-OK status: a server's answer (it sent trailers) is a status
    on the span; UNAVAILABLE with none is the client's own (no connection), a failed attempt."""
    if code == grpc.StatusCode.UNAVAILABLE and not answered:
        span.fail(code.name)
    else:
        span.set_status(status_for_code(code))
    span.end()


def _finish(
    exchange: MeshExchange, metrics: GrpcMetrics, status: int, code: grpc.StatusCode, error: str | None = None
) -> None:
    """The call's single exit: the exchange's `finish` (once) and the gRPC call count."""
    if not exchange.finished:
        exchange.finish(status, error)
        metrics.record(exchange, code)


async def _send_head(
    exchange: MeshExchange,
    metrics: GrpcMetrics,
    initial: Iterable[tuple[str, str | bytes]] | None,
    context: Context,
    message: bytes | None = None,
    status: int = 200,
) -> None:
    """The response phase on the upstream's initial metadata (and a unary answer's message, for
    filters that read bodies: a cache stores it), then that metadata (with the experiment's arm)
    to the client."""
    pairs = answer_metadata(initial)
    text = [(key, value) for key, value in pairs if isinstance(value, str)]
    route = exchange.route
    body = message if route is not None and route.filters.needs_response_body else None
    try:
        response = await exchange.respond(status, text, body)
    except Exception as exc:
        error = getattr(exc, "message", "a response filter failed")
        _finish(exchange, metrics, 500, grpc.StatusCode.INTERNAL, str(error))
        await context.abort(grpc.StatusCode.INTERNAL, str(error))
        raise
    binary = tuple((key, value) for key, value in pairs if isinstance(value, bytes))
    # Sending initial metadata on its own is a batch of its own in grpcio (about 0.1 ms a call):
    # with none to send, the answer carries its empty head itself.
    if response.headers or binary:
        await context.send_initial_metadata(tuple(response.headers) + binary)


async def _answer(exchange: MeshExchange, metrics: GrpcMetrics, response: Response, context: Context) -> None:
    """A filter's or the gateway's answer (401, 429, no route, no endpoint) as a gRPC status; its
    headers (retry-after, x-turnout-*) go in the trailing metadata."""
    message = answer_message(response)
    code = code_for_status(response.status)
    _finish(exchange, metrics, response.status, code, message)
    trailers = tuple((k, v) for k, v in response.headers if k != "content-type")
    await context.abort(code, message, trailers)


async def _upstream_failed(
    exchange: MeshExchange,
    metrics: GrpcMetrics,
    code: grpc.StatusCode,
    details: str | None,
    trailers: Metadata | None,
    context: Context,
) -> None:
    """An upstream's non-OK status (or no answer at all) to the client as it came, after the
    response phase's accounting: an endpoint is charged only for codes that say it failed."""
    status = status_for_code(code)
    details = details or code.name
    if code == grpc.StatusCode.UNAVAILABLE and not trailers:
        # No server said this: the client did, naming the endpoint's address, which the caller is
        # not told. The access log keeps its words.
        exchange.ctx.error = details
        details = f"no upstream of cluster '{exchange.ctx.cluster}' could take the call"
    if exchange.endpoint is not None:
        # The call failed already: its status stands, whatever a response filter thinks of it.
        with contextlib.suppress(Exception):
            await exchange.respond(status, [], None)
    _finish(exchange, metrics, status, code, details)
    await context.abort(code, details, answer_metadata(trailers))
