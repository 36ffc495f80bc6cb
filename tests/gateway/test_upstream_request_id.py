"""The upstream's x-request-id reaches the client (it matches the server's logs); the gateway's own
id goes in x-turnout-request-id when the two differ, and alone in x-request-id when the upstream
sent none or echoed it."""

from __future__ import annotations

import pytest

from gateway.http.headers import HeaderRules, relayed_header_lines


def lines(upstream: list[tuple[bytes, bytes]], own: bytes = b"gw-1") -> list[bytes]:
    return relayed_header_lines(upstream, HeaderRules(), own).split(b"\r\n")[:-1]


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        (
            [(b"content-type", b"application/json")],
            [b"content-type: application/json", b"x-request-id: gw-1"],
        ),
        ([(b"X-Request-ID", b"gw-1")], [b"X-Request-ID: gw-1"]),
        ([(b"x-request-id", b"ts-9")], [b"x-request-id: ts-9", b"x-turnout-request-id: gw-1"]),
    ],
)
def test_the_request_id_lines(upstream: list[tuple[bytes, bytes]], expected: list[bytes]) -> None:
    assert lines(upstream) == expected


def test_a_route_that_removes_the_upstreams_id_gets_the_gateways() -> None:
    rules = HeaderRules.build(add={}, remove=["x-request-id"])
    rendered = relayed_header_lines([(b"x-request-id", b"ts-9")], rules, b"gw-1")
    assert rendered == b"x-request-id: gw-1\r\n"
