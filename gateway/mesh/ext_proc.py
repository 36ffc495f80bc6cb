"""`envoy.service.ext_proc.v3.ExternalProcessor/Process`: turnout decides each request Envoy carries.

One bidirectional stream is one HTTP request. Envoy sends, in this order, the request headers, the
request body and trailers (when the processing mode asks for them), the response headers and, where
asked, the response body and trailers; every message gets exactly one answer, in order.

    request_headers   header-only route: the whole decision (filters, arm, endpoint) -> mutation
                      + dynamic metadata, or an ImmediateResponse. BUFFERED route (declared, or
                      whose filters read the body): CONTINUE with a mode_override asking for the
                      body. STREAMED route: the decision on the headers (Envoy sends them upstream
                      before the first chunk), without the filters that read the body, and the
                      mode_override. The override also carries the route's response body mode
                      (by default BUFFERED when a response filter or the experiment reads the
                      answer) and, for a gRPC request, asks for the response trailers
    request_body      BUFFERED: the one message with the whole body; the decision runs on it.
                      STREAMED: each chunk answered CONTINUE as it comes (kept where a filter reads
                      the body); at end_of_stream those filters run on the whole body, and a refusal
                      is an ImmediateResponse before the last chunk goes upstream
    request_trailers  CONTINUE; they end a STREAMED body whose last chunk did not
    response_*        the answer's half (`ext_proc_answer.py`): the response phase in the route's
                      response body mode, and the outcome (a gRPC answer's grpc-status)

A message out of order (anything before request_headers, a second request_headers, response_headers
or trailers, the response head or trailers before a BUFFERED body, a body after its trailers,
anything after response_trailers, an empty message), or a body larger than the listener's body
limit, ends the stream with INVALID_ARGUMENT; the request is finished (logged, endpoint released)
whatever way the stream ends: a cancelled stream as 499; a stream Envoy closes before the response
headers (a processing mode that skips them) without an experiment outcome; one Envoy closes after
them, before the answer ended (trailers skipped), with what the head said.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from gateway.core.errors import GatewayError
from gateway.core.filters import Response
from gateway.mesh.envoy_messages import (
    REQUEST_BODY_FIELD,
    REQUEST_HEADERS_FIELD,
    encode_forward,
    encode_mode,
    immediate_response,
    request_headers,
)
from gateway.mesh.exchange import Forward, MeshExchange, error_response
from gateway.mesh.ext_proc_answer import AnswerSide, ProtocolError
from gateway.mesh.grpc_outcome import GRPC_CONTENT_TYPE

if TYPE_CHECKING:
    from gateway.runtime import Runtime

_MODE = processing_mode_pb2.ProcessingMode
# The body modes as plain ints: an enum wrapper's attribute is a lookup per use on the hot path.
_NONE, _BUFFERED, _STREAMED = int(_MODE.NONE), int(_MODE.BUFFERED), int(_MODE.STREAMED)
BODY_MODES = {"none": _NONE, "buffered": _BUFFERED, "streamed": _STREAMED}

_SEND = _MODE.HeaderSendMode.SEND
_CONTINUE_BODY = pb.ProcessingResponse(request_body=pb.BodyResponse())
_CONTINUE_REQUEST_TRAILERS = pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
_OVERRIDES: dict[tuple[int, int, bool], tuple[Any, bytes]] = {}


def mode_override(request_body: int, response_body: int, grpc: bool) -> tuple[Any, bytes]:
    """The mode override asking for these body modes (and, for a gRPC request, the response
    trailers that carry its grpc-status), and its encoding: nine combinations, built once each."""
    key = (request_body, response_body, grpc)
    known = _OVERRIDES.get(key)
    if known is None:
        mode = _MODE(
            request_body_mode=request_body,
            response_body_mode=response_body,
            response_trailer_mode=_SEND if grpc else _MODE.HeaderSendMode.DEFAULT,
        )
        known = _OVERRIDES[key] = (mode, encode_mode(mode))
    return known


def serialized(answer: Any) -> bytes:
    """An answer as bytes: a forward decision comes encoded already (envoy_messages.py)."""
    return answer if isinstance(answer, bytes) else bytes(answer.SerializeToString())


@dataclass(frozen=True, slots=True)
class BodyModes:
    """The body modes routes declare (`mesh.request_body`, `mesh.response_body`), as Envoy's enum;
    a route not named gets the default for what its filters and experiment read."""

    request: Mapping[str, int] = field(default_factory=dict)
    response: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, request: Mapping[str, str], response: Mapping[str, str]) -> BodyModes:
        return cls(
            {route: BODY_MODES[mode] for route, mode in request.items()},
            {route: BODY_MODES[mode] for route, mode in response.items()},
        )


class ExternalProcessor(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """The servicer; `runtime()` is read once per stream, so a reload never changes a request."""

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        body_modes: BodyModes,
        max_body: int,
        delegated: frozenset[str] = frozenset(),
    ) -> None:
        self._runtime = runtime
        self._delegated = delegated
        self._body_modes = body_modes
        self._max_body = max_body

    async def Process(  # gRPC's method name
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        stream = _Stream(self._runtime(), self._body_modes, self._max_body, self._delegated)
        try:
            async for message in requests:
                yield await stream.answer(message)
            stream.end_unseen()  # Envoy closed the stream: its mode skips what is left
        except ProtocolError as exc:
            stream.end(400, str(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            stream.end(499, "the ext_proc stream ended before the response")


class _Stream:
    """The state of one request's stream; the answer's half is an `AnswerSide`."""

    __slots__ = (
        "answer_side",
        "body",
        "body_mode",
        "body_modes",
        "body_size",
        "delegated",
        "exchange",
        "keep_body",
        "max_body",
        "request_trailers",
        "runtime",
    )

    def __init__(
        self, runtime: Runtime, body_modes: BodyModes, max_body: int, delegated: frozenset[str]
    ) -> None:
        self.runtime = runtime
        self.body_modes = body_modes
        self.delegated = delegated
        self.max_body = max_body
        self.exchange: MeshExchange | None = None
        self.answer_side: AnswerSide | None = None
        self.body_mode = _NONE
        """BUFFERED: the decision waits for the body. STREAMED: decided, chunks flowing."""
        self.keep_body = False
        """STREAMED with filters that read the body: the chunks are kept for them."""
        self.body: list[bytes] = []
        self.body_size = 0
        self.request_trailers = False

    async def answer(self, message: Any) -> Any:
        kind = message.WhichOneof("request")
        if kind is None:
            raise ProtocolError("a ProcessingRequest with no message in it")
        if kind == "request_headers":
            return await self._request_headers(message.request_headers)
        side = self.answer_side
        if side is None:
            raise ProtocolError(f"{kind} before request_headers")
        if side.trailers:
            raise ProtocolError(f"{kind} after response_trailers")
        if kind == "request_body":
            return await self._request_body(message.request_body)
        if kind == "request_trailers":
            return await self._request_trailers()
        if self.body_mode == _BUFFERED:
            raise ProtocolError(f"{kind} before the buffered request body")
        if kind == "response_headers":
            return await side.headers(message.response_headers)
        if kind == "response_body":
            return await side.body(message.response_body)
        return await side.trailers_received(message.response_trailers)

    async def _request_headers(self, headers: Any) -> Any:
        if self.exchange is not None:
            raise ProtocolError("a second request_headers on one stream")
        try:
            pseudo, plain = request_headers(headers.headers)
            exchange = MeshExchange.from_request(self.runtime, pseudo, plain)
        except GatewayError as error:  # a path with no normal form: answered like the proxy does
            return immediate_response(error_response(error))
        self.exchange = exchange
        route = exchange.route
        override = b""
        reads_body = None
        response_mode = _NONE
        reads_answer = False
        if route is not None:
            chain = route.filters
            modes = self.body_modes
            # Declared per route; a route whose filters read a body gets it whole by default.
            mode = modes.request.get(route.name, _BUFFERED if chain.needs_request_body else _NONE)
            service = self.runtime.experiments
            reads_answer = chain.needs_response_body or (
                route.experiment is not None
                and service is not None
                and service.needs_response_body(route.experiment)
            )
            response_mode = modes.response.get(route.name, _BUFFERED if reads_answer else _NONE)
            # A gRPC request's outcome is the grpc-status in its answer's trailers.
            grpc_request = exchange.ctx.headers.get("content-type", "").startswith(GRPC_CONTENT_TYPE)
            if mode != _NONE or response_mode != _NONE or grpc_request:
                message, override = mode_override(mode, response_mode, grpc_request)
            whole = headers.end_of_stream  # no body follows
            if mode != _NONE and not whole:
                self.body_mode = mode
                if mode == _BUFFERED:  # the decision waits for the whole body
                    self.answer_side = AnswerSide(exchange, response_mode, reads_answer, self.max_body)
                    return pb.ProcessingResponse(request_headers=pb.HeadersResponse(), mode_override=message)
                # STREAMED: the headers go upstream before the first chunk is answered (Envoy's
                # STREAMED mode), so the decision is made on them; body filters run at the end.
                self.keep_body = chain.needs_request_body
                reads_body = False
            elif mode == _NONE and chain.needs_request_body and not whole:
                reads_body = False  # declared none: the filters that read a body are left out
        self.answer_side = AnswerSide(exchange, response_mode, reads_answer, self.max_body)
        return self._decided(await exchange.decide(self.delegated, reads_body), "request_headers", override)

    async def _request_body(self, body: Any) -> Any:
        exchange = self.exchange
        assert exchange is not None
        if self.request_trailers:
            raise ProtocolError("request_body after request_trailers")
        mode = self.body_mode
        if mode == _NONE:  # decided on the headers: Envoy's own mode sends bodies
            return _CONTINUE_BODY
        self.body_size += len(body.body)
        if self.body_size > self.max_body:
            raise ProtocolError(f"the request body is larger than {self.max_body} bytes")
        if mode == _STREAMED:  # each chunk answered as it comes, kept where a filter reads it
            if self.keep_body:
                self.body.append(body.body)
            if not body.end_of_stream:
                return _CONTINUE_BODY
            refusal = await self._streamed_body_ended()
            return _CONTINUE_BODY if refusal is None else refusal
        # BUFFERED: Envoy sends the whole body in one message (end_of_stream is false when
        # trailers follow it).
        self.body_mode = _NONE
        exchange.ctx.body = body.body
        exchange.ctx.bytes_in = len(body.body)
        return self._decided(await exchange.decide(self.delegated), "request_body")

    async def _streamed_body_ended(self) -> Any:
        """The end of a STREAMED body: the filters that read it run on the whole; an
        ImmediateResponse when one refuses (the last chunk has not gone upstream yet), else None."""
        exchange = self.exchange
        assert exchange is not None
        self.body_mode = _NONE
        exchange.ctx.bytes_in = self.body_size
        if not self.keep_body or exchange.finished:
            return None
        exchange.ctx.body = b"".join(self.body)
        self.body = []
        try:
            refusal = await exchange.run_filters(None, self.delegated, reads_body=True)
        except GatewayError as error:
            refusal = exchange.refused(error)
        return None if refusal is None else self._decided(refusal, "request_body")

    async def _request_trailers(self) -> Any:
        if self.request_trailers:
            raise ProtocolError("a second request_trailers on one stream")
        self.request_trailers = True
        if self.body_mode == _BUFFERED:
            raise ProtocolError("request_trailers before the buffered request body")
        if self.body_mode == _STREAMED:  # trailers end a streamed body
            refusal = await self._streamed_body_ended()
            if refusal is not None:
                return refusal
        return _CONTINUE_REQUEST_TRAILERS

    def _decided(self, decision: Response | Forward, phase: str, override: bytes = b"") -> Any:
        """The answer to the message that decided: an ImmediateResponse, or the forward decision
        already serialized (with the mode override, when there is one)."""
        exchange = self.exchange
        assert exchange is not None
        if isinstance(decision, Response):
            for name, value in exchange.extra_response_headers:
                decision.set_header(name, value)
            exchange.finish(decision.status)
            return immediate_response(decision)
        field = REQUEST_HEADERS_FIELD if phase == "request_headers" else REQUEST_BODY_FIELD
        return encode_forward(decision, field, override)

    def end(self, status: int, error: str) -> None:
        if self.exchange is not None:
            self.exchange.finish(status, error)

    def end_unseen(self) -> None:
        """Envoy closed the stream: an answer seen but not ended (a gRPC answer's trailers skipped)
        is recorded as it stands; a request whose answer turnout never saw gets no outcome."""
        if self.answer_side is not None:
            self.answer_side.ended()
        if self.exchange is not None:
            self.exchange.finish(seen=False)
