"""The answer's half of an ext_proc stream: response headers, body and trailers.

The route's response body mode (`mesh.response_body`, asked of Envoy in the mode override sent
with the request's decision) says when the response phase runs:

    NONE       at the head: the response filters on status and headers, the experiment's
               headers, the outcome
    BUFFERED   the head is held until Envoy sends the whole body in one message: the filters run on
               both and may rewrite the body (a body mutation); an answer that ends in trailers
               without a body gets its response phase at the trailers
    STREAMED   the head is answered at once with what the filters that do not read bodies made of
               it and the experiment's headers (Envoy sends it on to the client); each chunk is
               answered CONTINUE as it comes, kept where a filter or the experiment reads the body;
               at its end (end_of_stream, or the trailers) the filters that read bodies see the
               whole answer, to store or study it (a cache filling, output metrics), too late to
               change it

A gRPC answer (content type `application/grpc`) says how it went in `grpc-status`: in its trailers,
or in its head when it has no body (trailers-only). Its outcome (route metrics, the endpoint's and
the experiment's) is that code as the gRPC front door maps it (`grpc_outcome.py`), recorded when
the code arrives; a gRPC request's decision asks Envoy for the response trailers. A stream that
ends without them records the head's status.
"""

from __future__ import annotations

import logging
from typing import Any

from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from gateway.core.errors import GatewayError
from gateway.mesh.envoy_messages import header_mutation, header_pairs, immediate_response
from gateway.mesh.exchange import MeshExchange, error_response
from gateway.mesh.grpc_outcome import grpc_outcome, is_grpc

log = logging.getLogger("turnout.mesh")

_MODE = processing_mode_pb2.ProcessingMode
_CONTINUE_HEADERS = pb.ProcessingResponse(response_headers=pb.HeadersResponse())
_CONTINUE_BODY = pb.ProcessingResponse(response_body=pb.BodyResponse())
_CONTINUE_TRAILERS = pb.ProcessingResponse(response_trailers=pb.TrailersResponse())


class ProtocolError(Exception):
    """Envoy's messages broke the protocol's order: the stream ends with INVALID_ARGUMENT."""


class AnswerSide:
    """The state of one stream's answer."""

    __slots__ = (
        "chunks",
        "error",
        "exchange",
        "head",
        "keep",
        "max_body",
        "mode",
        "outcome",
        "seen",
        "size",
        "streaming",
        "trailers",
    )

    def __init__(self, exchange: MeshExchange, mode: int, keep: bool, max_body: int) -> None:
        self.exchange = exchange
        self.mode = mode
        """The response body mode asked of Envoy: NONE, BUFFERED or STREAMED."""
        self.keep = keep
        """A filter or the experiment reads the answer's body: STREAMED chunks are kept for them."""
        self.max_body = max_body
        self.seen = False
        self.trailers = False
        self.head: tuple[int, list[tuple[str, str]]] | None = None
        """The answer's status and headers, held (BUFFERED) or kept (STREAMED) until its body ends."""
        self.streaming = False
        self.chunks: list[bytes] = []
        self.size = 0
        self.outcome: int | None = 0
        """The status to record: the head's, a gRPC answer's mapped code; None while a gRPC
        answer's code is still to come in its trailers."""
        self.error: str | None = None

    async def headers(self, headers: Any) -> Any:
        exchange = self.exchange
        if self.seen:
            raise ProtocolError("a second response_headers on one stream")
        self.seen = True
        if exchange.finished:  # answered by turnout already: nothing left to decide
            return _CONTINUE_HEADERS
        pairs = header_pairs(headers.headers)
        status_text = next((value for name, value in pairs if name == ":status"), "")
        if not status_text.isdigit():
            raise ProtocolError("response_headers without a numeric :status")
        status = int(status_text)
        plain = [(name.lower(), value) for name, value in pairs if not name.startswith(":")]
        self.outcome = status
        if status == 200 and is_grpc(plain):
            if any(name == "grpc-status" for name, _ in plain) or headers.end_of_stream:
                self.outcome, self.error = grpc_outcome(plain)  # trailers-only: the code is here
            else:
                self.outcome = None  # the code comes in the trailers
                exchange.ctx.status = status
                exchange.note_load(plain)
        if self.outcome is not None:
            exchange.note_answer(self.outcome, plain)
        if headers.end_of_stream or self.mode == _MODE.NONE:
            return self._headers_answer(await self._respond(status, plain, None, None))
        if self.mode == _MODE.BUFFERED:  # the filters run on the whole answer
            self.head = (status, plain)
            return _CONTINUE_HEADERS
        # STREAMED: the head goes to the client once answered; what reads the body runs at its end.
        self.head = (status, plain)
        self.streaming = True
        return self._headers_answer(await self._respond(status, plain, None, False))

    async def body(self, body: Any) -> Any:
        if self.trailers:
            raise ProtocolError("response_body after response_trailers")
        if self.streaming:
            self._keep(body.body)
            if body.end_of_stream:
                await self._streamed_answer_ended()
            return _CONTINUE_BODY
        head = self.head
        if head is None:  # not asked for (Envoy's own mode sends it, STREAMED or not): CONTINUE
            return _CONTINUE_BODY
        # Asked for BUFFERED: Envoy sends the whole answer body in one message.
        if len(body.body) > self.max_body:
            raise ProtocolError(f"the response body is larger than {self.max_body} bytes")
        self.head = None
        common = await self._respond(head[0], head[1], body.body, None)
        if not isinstance(common, pb.CommonResponse):
            return common
        return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common))

    async def trailers_received(self, trailers: Any) -> Any:
        if not self.seen:
            raise ProtocolError("response_trailers before response_headers")
        self.trailers = True
        if self.streaming:  # trailers end a streamed answer whose last chunk did not
            await self._streamed_answer_ended()
        head = self.head
        if head is not None:  # BUFFERED without a body: its response phase runs now, on none
            self.head = None
            common = await self._respond(head[0], head[1], b"", None)
            if not isinstance(common, pb.CommonResponse):
                return common
        if self.outcome is None:
            self.outcome, self.error = grpc_outcome(header_pairs(trailers.trailers))
            self.exchange.note_answer(self.outcome)
            self._settle()
        return _CONTINUE_TRAILERS

    def ended(self) -> None:
        """Envoy closed the stream: an answer still waiting for its end is recorded as it stands."""
        exchange = self.exchange
        if exchange.finished or not self.seen or (self.head is not None and not self.streaming):
            return  # no answer seen, or one held whole whose body never came: nothing to record
        if self.outcome is None:  # a gRPC answer whose trailers never came: its head's status
            self.outcome = exchange.ctx.status
            exchange.note_answer(self.outcome)
        exchange.finish(self.outcome, self.error)

    # ----- the response phase -----

    def _keep(self, chunk: bytes) -> None:
        if not self.keep:
            return
        self.size += len(chunk)
        if self.size > self.max_body:  # the answer flows on; what reads it does without it
            self.keep = False
            self.chunks = []
            log.info("mesh: a streamed answer larger than %d bytes is not kept", self.max_body)
            return
        self.chunks.append(chunk)

    async def _streamed_answer_ended(self) -> None:
        """The end of a STREAMED answer: the filters that read bodies see it whole; what they
        change cannot reach the client any more, and what they raise is noted on the request."""
        self.streaming = False
        head, self.head = self.head, None
        assert head is not None
        exchange = self.exchange
        if self.keep:
            body, self.chunks = b"".join(self.chunks), []
            try:
                await exchange.respond_phase(head[0], head[1], body, reads_body=True)
            except GatewayError as error:
                exchange.ctx.error = error.message
        self._settle()

    async def _respond(
        self, status: int, headers: list[tuple[str, str]], body: bytes | None, reads_body: bool | None
    ) -> Any:
        """The response phase (all of it, or the part that `reads_body` selects): the changes
        for Envoy to make, as a CommonResponse, or an ImmediateResponse when a hook refused."""
        exchange = self.exchange
        sent = dict(headers)
        try:
            response = await exchange.respond_phase(status, headers, body, reads_body)
        except GatewayError as error:  # the answer is replaced: nothing of it is kept or held
            self.streaming = False
            self.head = None
            exchange.finish(error.status, error.message)
            return immediate_response(error_response(error))
        if response.status != status:  # a filter changed the status: that is the outcome
            self.outcome = response.status
        if reads_body is None:
            self._settle()
        edited = dict(response.headers)
        changed = [(name, value) for name, value in response.headers if sent.get(name) != value]
        if response.status != status:
            changed.append((":status", str(response.status)))
        removed = [name for name in sent if name not in edited]
        common = pb.CommonResponse(header_mutation=header_mutation(changed, removed))
        if body is not None and response.body is not None and response.body != body:
            common.body_mutation.body = response.body
        return common

    def _settle(self) -> None:
        """The request's end, once its answer has run its response phase and its outcome is known
        (a gRPC answer's code waits for the trailers)."""
        if self.outcome is not None and not self.streaming and self.head is None:
            self.exchange.finish(self.outcome, self.error)

    @staticmethod
    def _headers_answer(common: Any) -> Any:
        if not isinstance(common, pb.CommonResponse):
            return common
        return pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=common))
