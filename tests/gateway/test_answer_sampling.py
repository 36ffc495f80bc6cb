"""Answers for a random share of requests (`Filter.answer_sample_rate`), over fake transports: a
drawn answer is held back whole and handed to the filter once written, a request left out streams
untouched, a server-sent event stream is never held, and a sampler that raises costs nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.gateway.test_proxy_phases import OK, Harness, _route, _status, harness
from tests.support.sampling_filters import Sampler

STREAM = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 11\r\n\r\ndata: one\n\n"


def _sampler(h: Harness) -> Sampler:
    [sampler] = h.gateway.runtime.routes[0].filters.filters
    assert isinstance(sampler, Sampler)
    return sampler


def _exchange(h: Harness, answer: bytes) -> bytes:
    """One POST through the gateway; the endpoint it reached answers `answer`."""
    before = {address: len(t.written) for address, (_, t) in h.upstreams.items()}
    client, transport = h.client()
    client.data_received(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    [address] = [a for a, (_, t) in h.upstreams.items() if len(t.written) > before[a]]
    h.upstreams[address][0].data_received(answer)
    return transport.data


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
