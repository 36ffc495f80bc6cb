"""CompletionMeter without sockets: usage from JSON answers and streams, the usage chunk removed
across any packet boundaries, token timings; and the OpenAI codecs it relies on."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.core.context import Principal, RequestContext
from gateway.core.protocols.openai import (
    OpenAIRequestError,
    add_usage_request,
    asks_for_usage,
    is_sampled,
    model_lookup,
    prompt_prefix,
    read_request,
    with_fresh_id,
)
from gateway.llm_meter import CompletionMeter
from gateway.llm_metrics import LlmMetrics


def event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


CHUNKS = [event({"id": "c", "choices": [{"index": 0, "delta": {"content": w}}]}) for w in ("a", " b", " c")]
USAGE = event({"id": "c", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
STREAM = b"".join(CHUNKS) + USAGE + b"data: [DONE]\n\n"


SSE = [(b"Content-Type", b"text/event-stream; charset=utf-8")]


def context() -> RequestContext:
    ctx = RequestContext("POST", "/v1/chat/completions", "", {}, "127.0.0.1", 0.0, "id", route="r")
    ctx.principal = Principal("alice", tenant="acme")
    ctx.status = 200
    return ctx


def relay(meter: CompletionMeter, pieces: list[bytes]) -> bytes:
    meter.on_head(SSE, None)
    return b"".join(meter.feed(piece) for piece in pieces)


@pytest.mark.parametrize("size", [1, 3, 17, 64, len(STREAM)])
def test_the_usage_chunk_is_removed_whatever_the_packet_boundaries(size: int) -> None:
    meter = CompletionMeter("m", strip_usage=True)
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert relay(meter, pieces) == b"".join(CHUNKS) + b"data: [DONE]\n\n"
    assert (meter.prompt_tokens, meter.completion_tokens, meter.token_events) == (7, 3, 3)


def test_a_client_that_asked_for_usage_gets_the_stream_as_sent() -> None:
    meter = CompletionMeter("m", strip_usage=False)
    pieces = [STREAM[:10], STREAM[10:100], STREAM[100:]]
    assert relay(meter, pieces) == STREAM
    assert meter.completion_tokens == 3


def test_an_answer_of_known_length_is_never_cut() -> None:
    meter = CompletionMeter("m", strip_usage=True)
    meter.on_head(SSE, len(STREAM))
    assert meter.feed(STREAM) == STREAM


def test_usage_and_latencies_are_recorded_per_tenant_and_model() -> None:
    registry = CollectorRegistry()
    metrics = LlmMetrics(registry)
    meter = CompletionMeter("m", strip_usage=False)
    relay(meter, [STREAM])
    ctx = context()
    meter.close(ctx, metrics)
    labels = {"tenant": "acme", "principal": "alice", "model": "m", "route": "r"}
    assert registry.get_sample_value("turnout_llm_prompt_tokens_total", labels) == 7
    assert registry.get_sample_value("turnout_llm_completion_tokens_total", labels) == 3
    ttft = registry.get_sample_value(
        "turnout_llm_time_to_first_token_seconds_count", {"route": "r", "model": "m"}
    )
    assert ttft == 1
    assert (ctx.prompt_tokens, ctx.completion_tokens) == (7, 3)


def test_a_json_answer_and_a_held_back_one_are_read_at_the_end() -> None:
    answer = orjson.dumps({"id": "x", "usage": {"prompt_tokens": 2, "completion_tokens": 5}})
    relayed = CompletionMeter("m", strip_usage=False)
    relayed.on_head([(b"content-type", b"application/json")], None)
    relayed.feed(answer[:9])
    relayed.feed(answer[9:])
    held = CompletionMeter("m", strip_usage=True)
    held.read_whole(STREAM)
    registry = CollectorRegistry()
    metrics = LlmMetrics(registry)
    relayed.close(context(), metrics)
    held.close(context(), metrics)
    assert (relayed.prompt_tokens, relayed.completion_tokens) == (2, 5)
    assert (held.prompt_tokens, held.completion_tokens) == (7, 3)
    assert held.first_token_at is None, "a held answer's arrival times are not token times"


def test_the_request_codecs() -> None:
    document, model = read_request(b'{"model": "m", "stream": true, "stream_options": {"x": 1}}')
    assert model == "m" and not asks_for_usage(document)
    add_usage_request(document)
    assert document["stream_options"] == {"x": 1, "include_usage": True} and asks_for_usage(document)
    for body in (b"{", b"[]", b'{"model": ""}', b"[" * 100 + b"]" * 100):
        with pytest.raises(OpenAIRequestError) as raised:
            read_request(body)
        assert raised.value.status == 400
    assert is_sampled({"messages": []}) and is_sampled({"prompt": "x", "temperature": 0.2})
    assert not is_sampled({"messages": [], "temperature": 0}) and not is_sampled({"input": "x"})
    assert (model_lookup("/v1/models"), model_lookup("/v1/models/a/b"), model_lookup("/v1/chat")) == (
        "",
        "a/b",
        None,
    )
    chat = {"messages": [{"role": "system", "content": "abc"}, {"role": "user", "content": [{"text": "d"}]}]}
    assert prompt_prefix(chat, 100) == "system:abc\nuser:d\n" and prompt_prefix(chat, 4) == "syst"
    assert prompt_prefix({"prompt": ""}, 5) is None


def test_a_stored_completion_gets_a_fresh_id_and_time() -> None:
    stored = orjson.dumps({"id": "chatcmpl-abc", "created": 1, "choices": []})
    fresh = orjson.loads(with_fresh_id(stored, 1000.5))
    assert fresh["id"].startswith("chatcmpl-") and fresh["id"] != "chatcmpl-abc" and fresh["created"] == 1000
    assert with_fresh_id(b"not json", 1.0) == b"not json"
