"""Answers for a random share of requests (`Filter.answer_sample_rate`), over fake transports: a
drawn answer streams to the client byte for byte as an undrawn one and is handed to the filter whole
once written (a copy; too long an answer is handed over without its body), a request left out is
not seen, a server-sent event stream is never seen, an answer a body filter rewrites is seen as
rewritten, and a sampler that raises costs nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.core.context import ANSWER_COPY_MAX_BYTES
from tests.gateway.test_proxy_phases import OK, Harness, _route, _status, harness
from tests.support.sampling_filters import Sampler

STREAM = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 11\r\n\r\ndata: one\n\n"


def _sampler(h: Harness) -> Sampler:
    [sampler] = h.gateway.runtime.routes[0].filters.filters
    assert isinstance(sampler, Sampler)
    return sampler


def _exchange(h: Harness, *answer: bytes) -> bytes:
    """One POST through the gateway; the endpoint it reached answers `answer`'s packets in turn."""
    before = {address: len(t.written) for address, (_, t) in h.upstreams.items()}
    client, transport = h.client()
    client.data_received(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    [address] = [a for a, (_, t) in h.upstreams.items() if len(t.written) > before[a]]
    for packet in answer:
        h.upstreams[address][0].data_received(packet)
    return transport.data


def _without_request_id(sent: bytes) -> bytes:
    """The client's bytes less the request id line, the one part that differs between requests."""
    return b"\r\n".join(line for line in sent.split(b"\r\n") if not line.startswith(b"x-request-id:"))


def _chunked(*pieces: bytes) -> list[bytes]:
    """An answer with a chunked body, one packet per piece."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    packets = [head]
    packets.extend(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    packets.append(b"0\r\n\r\n")
    return packets


def _filters(**config: Any) -> list[dict[str, Any]]:
    return _route([{"plugin": "tests.support.sampling_filters:SAMPLER", "config": config}])


async def test_a_drawn_answer_is_handed_over_whole_once_written(tmp_path: Path) -> None:
    async with harness(tmp_path, routes=_filters(rate=1.0)) as h:
        sent = _exchange(h, OK)
        assert _status(sent) == 200 and sent.endswith(b"ok")
        assert _sampler(h).seen == [(200, b"ok")]


async def test_a_request_left_out_streams_and_is_not_seen(tmp_path: Path) -> None:
    async with harness(tmp_path, routes=_filters(rate=0.0)) as h:
        sent = _exchange(h, OK)
        assert _status(sent) == 200 and sent.endswith(b"ok")
        assert _sampler(h).seen == []
        assert h.gateway.runtime.routes[0].filters.answer_samplers == ()


async def test_an_event_stream_is_never_held_for_a_sampler(tmp_path: Path) -> None:
    async with harness(tmp_path, routes=_filters(rate=1.0)) as h:
        sent = _exchange(h, STREAM)
        assert _status(sent) == 200 and sent.endswith(b"data: one\n\n")
        assert _sampler(h).seen == []


async def test_a_sampler_that_raises_costs_the_client_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path, routes=_filters(rate=1.0, fail=True)) as h:
        for _ in range(2):
            sent = _exchange(h, OK)
            assert _status(sent) == 200 and sent.endswith(b"ok")
        assert h.route_requests() == 2


async def test_a_drawn_answer_reaches_the_client_exactly_as_an_undrawn_one(tmp_path: Path) -> None:
    body = b'{"outputs":[{"name":"p","datatype":"FP32","shape":[1,2],"data":[0.8,0.2]}]}'
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
    sent = {}
    for rate in (0.0, 1.0):
        async with harness(tmp_path, routes=_filters(rate=rate)) as h:
            sent[rate] = _without_request_id(_exchange(h, answer + body[:20], body[20:]))
            assert _sampler(h).seen == ([(200, body)] if rate else [])
    assert sent[0.0] == sent[1.0] and sent[1.0].endswith(body)


async def test_a_chunked_answer_is_seen_whole(tmp_path: Path) -> None:
    async with harness(tmp_path, routes=_filters(rate=1.0)) as h:
        sent = _exchange(h, *_chunked(b'{"outputs":', b"[]}"))
        assert _status(sent) == 200
        assert _sampler(h).seen == [(200, b'{"outputs":[]}')]


async def test_too_long_an_answer_is_not_copied_and_is_seen_without_its_body(tmp_path: Path) -> None:
    long = b"x" * (ANSWER_COPY_MAX_BYTES + 1)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % len(long)
    half = ANSWER_COPY_MAX_BYTES // 2 + 1
    async with harness(tmp_path, routes=_filters(rate=1.0)) as h:
        sent = _exchange(h, head + long[:half], long[half:])
        assert _status(sent) == 200 and sent.endswith(long)
        # Chunked, its length unknown until it is past the bound.
        sent = _exchange(h, *_chunked(long[:half], long[half:]))
        assert _status(sent) == 200
        assert _sampler(h).seen == [(200, None), (200, None)]


async def test_an_answer_a_body_filter_rewrites_is_seen_as_the_client_gets_it(tmp_path: Path) -> None:
    filters = [
        {"plugin": "tests.support.plugins:BODY_UPPER", "config": {}},
        {"plugin": "tests.support.sampling_filters:SAMPLER", "config": {"rate": 1.0}},
    ]
    async with harness(tmp_path, routes=_route(filters)) as h:
        sent = _exchange(h, OK)
        assert sent.endswith(b"ok\n-- seen by body_upper")
        [_, sampler] = h.gateway.runtime.routes[0].filters.filters
        assert isinstance(sampler, Sampler)
        assert sampler.seen == [(200, b"ok\n-- seen by body_upper")]
