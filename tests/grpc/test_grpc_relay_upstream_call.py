"""What a relayed (unbatched) gRPC call carries upstream, on both main-port transports: the client's
metadata, the request id (the client's, or the gateway's own), x-forwarded-for (the client's chain,
then the client's address) and the trace context as a REST request's head does: the client's
traceparent continued when tracing is off, the traceparent of the attempt's client span when it is
on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tests.conftest import gateway_config
from tests.support.processes import free_port
from tests.tracing.otlp_receiver import CLIENT, SERVER, otlp_receiver

OIP_SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{OIP_SERVICE}/ModelInfer"
BIDI = "/test.Echo/Bidi"
TRANSPORTS = ["native", "splice"]
# A client's trace context: trace id, its own span, sampled.
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"


class _Recorder(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A unary ModelInfer (relayed on the gateway's HTTP/2 client) and a bidirectional method
    (relayed on grpcio's channels), each recording the metadata its call carried."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, str]]] = {MODEL_INFER: [], BIDI: []}
        self.forwarded: dict[str, list[list[str]]] = {MODEL_INFER: [], BIDI: []}
        """Each call's x-forwarded-for entries, as many as it carried."""

    def _record(self, path: str, context: grpc.aio.ServicerContext) -> None:
        pairs = context.invocation_metadata() or ()
        self.received[path].append({key: str(value) for key, value in pairs})
        self.forwarded[path].append([str(value) for key, value in pairs if key == "x-forwarded-for"])

    async def _infer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self._record(MODEL_INFER, context)
        return request

    async def _bidi(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        self._record(BIDI, context)
        async for message in requests:
            yield message

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        if details.method == MODEL_INFER:
            return grpc.unary_unary_rpc_method_handler(self._infer)
        if details.method == BIDI:
            return grpc.stream_stream_rpc_method_handler(self._bidi)
        return None


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[_Recorder, int]]:
    handler = _Recorder()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield handler, port
    finally:
        await server.stop(None)


def _config(port: int, transport: str, **top: Any) -> dict[str, Any]:
    return gateway_config(
        [f"127.0.0.1:{port}"],
        listen={"grpc_transport": transport},
        routes=[
            {"name": "oip", "match": {"grpc_service": OIP_SERVICE}, "backend": {"cluster": "up"}},
            {"name": "echo", "match": {"grpc_service": "test.Echo"}, "backend": {"cluster": "up"}},
        ],
        **top,
    )


async def _calls(port: int, metadata: tuple[tuple[str, str], ...]) -> None:
    """One ModelInfer and one bidirectional call with `metadata`."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        # Raw bytes: an empty message is a valid ModelInferRequest (no model named).
        assert await channel.unary_unary(MODEL_INFER)(b"", metadata=metadata) == b""
        call = channel.stream_stream(BIDI)(metadata=metadata)
        await call.write(b"hi")
        assert await call.read() == b"hi"
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF


def _last(handler: _Recorder) -> list[dict[str, str]]:
    return [handler.received[path][-1] for path in (MODEL_INFER, BIDI)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unbatched_call_carries_the_request_id_and_continues_the_trace(
    make_gateway: Any, recorder: tuple[_Recorder, int], transport: str
) -> None:
    handler, port = recorder
    async with make_gateway(_config(port, transport)) as gw:
        # No id, no trace from the client: the gateway's own id, and no trace is started.
        await _calls(gw.data_port, (("x-user-id", "u1"),))
        for sent in _last(handler):
            assert sent["x-user-id"] == "u1"
            assert len(sent["x-request-id"]) == 32 and "traceparent" not in sent
        infer, bidi = _last(handler)
        assert infer["x-request-id"] != bidi["x-request-id"], "one id per call"
        # The client's id and trace: the id as sent, the trace continued with a new parent span.
        await _calls(gw.data_port, (("x-request-id", "call-7"), ("traceparent", TRACEPARENT)))
        for sent in _last(handler):
            assert sent["x-request-id"] == "call-7"
            version, trace_id, span_id, flags = sent["traceparent"].split("-")
            assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
            assert len(span_id) == 16 and span_id != CLIENT_SPAN
        # An id no header may carry is replaced by the gateway's own.
        await _calls(gw.data_port, (("x-request-id", "x" * 300),))
        for sent in _last(handler):
            assert len(sent["x-request-id"]) == 32


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unbatched_call_carries_x_forwarded_for(
    make_gateway: Any, recorder: tuple[_Recorder, int], transport: str
) -> None:
    handler, port = recorder
    async with make_gateway(_config(port, transport)) as gw:
        # No chain from the client: the client's address alone.
        await _calls(gw.data_port, ())
        assert [handler.forwarded[path][-1] for path in (MODEL_INFER, BIDI)] == [["127.0.0.1"]] * 2
        # The client's chain (grpcio's client sends one x-forwarded-for entry), then its address.
        for sent, relayed in (
            ("203.0.113.7", "203.0.113.7, 127.0.0.1"),
            ("203.0.113.7, 10.0.0.2", "203.0.113.7, 10.0.0.2, 127.0.0.1"),
        ):
            await _calls(gw.data_port, (("x-forwarded-for", sent),))
            assert [handler.forwarded[path][-1] for path in (MODEL_INFER, BIDI)] == [[relayed]] * 2


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_traced_call_sends_its_attempt_spans_traceparent(
    make_gateway: Any, recorder: tuple[_Recorder, int], transport: str
) -> None:
    handler, port = recorder
    async with otlp_receiver() as receiver:
        tracing = {"enabled": True, "sampling_ratio": 1.0, "endpoint": receiver.endpoint}
        async with make_gateway(_config(port, transport, tracing=tracing)) as gw:
            await _calls(gw.data_port, (("x-request-id", "call-8"), ("traceparent", TRACEPARENT)))
        sent = _last(handler)
        attempts = {item["traceparent"].split("-")[2] for item in sent}
        assert len(attempts) == 2, "each call its own attempt span"

        def attempt_spans(spans: list[Any]) -> list[Any]:
            return [span for span in spans if span.kind == CLIENT and span.span_id in attempts]

        await receiver.wait_for(lambda spans: len(attempt_spans(spans)) == 2)
    for item in sent:
        assert item["x-request-id"] == "call-8"
        version, trace_id, _, flags = item["traceparent"].split("-")
        assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    servers = {span.span_id: span for span in receiver.in_trace(TRACE_ID) if span.kind == SERVER}
    for span in attempt_spans(receiver.spans):
        assert span.trace_id == TRACE_ID and span.name == "upstream attempt"
        assert span.attributes["turnout.endpoint"] == f"127.0.0.1:{port}"
        assert not span.error
        # The attempt is a child of the gateway's server span, which continues the client's.
        assert servers[span.parent_id].parent_id == CLIENT_SPAN


async def test_a_retried_call_sends_each_attempt_its_own_span(
    make_gateway: Any, recorder: tuple[_Recorder, int]
) -> None:
    handler, port = recorder
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: refused, so the call goes to the other
    traces = [f"{index + 1:032x}" for index in range(2)]
    async with otlp_receiver() as receiver:
        tracing = {"enabled": True, "sampling_ratio": 1.0, "endpoint": receiver.endpoint}
        config = _config(port, "native", tracing=tracing)
        config["clusters"]["up"]["endpoints"] = [dead, f"127.0.0.1:{port}"]
        async with (
            make_gateway(config) as gw,
            grpc.aio.insecure_channel(f"127.0.0.1:{gw.data_port}") as channel,
        ):
            for trace_id in traces:  # round robin: at least one tries the dead endpoint first
                metadata = (("traceparent", f"00-{trace_id}-{CLIENT_SPAN}-01"),)
                assert await channel.unary_unary(MODEL_INFER)(b"", metadata=metadata) == b""

        def in_traces(spans: list[Any], kind: int) -> list[Any]:
            return [span for span in spans if span.kind == kind and span.trace_id in traces]

        # A server span ends after its attempts: both calls' spans are in once both of those are.
        await receiver.wait_for(lambda spans: len(in_traces(spans, SERVER)) == 2)
    sent = {
        item["traceparent"].split("-")[1]: item["traceparent"].split("-")[2]
        for item in handler.received[MODEL_INFER]
    }
    attempts = in_traces(receiver.spans, CLIENT)
    retried = [span for span in attempts if span.attributes["turnout.attempt"] == 1]
    assert retried, "a call tried the dead endpoint first"
    for second in retried:
        [first] = [span for span in attempts if span.trace_id == second.trace_id and span is not second]
        assert first.error and first.attributes["turnout.endpoint"] == dead
        assert first.attributes["turnout.attempt"] == 0 and first.parent_id == second.parent_id
        assert not second.error and second.attributes["turnout.endpoint"] == f"127.0.0.1:{port}"
        # The upstream got the traceparent of the attempt that reached it.
        assert sent[second.trace_id] == second.span_id
