"""An answer that passed response filters reaches the client with the same header lines as the
upstream's own answer would: hop-by-hop and framing headers dropped, the route's rules applied, the
request id lines as `relayed_header_lines` writes them (tests/gateway/test_upstream_request_id.py)."""

from __future__ import annotations

import pytest

from gateway.http.headers import (
    REQUEST_ID,
    TURNOUT_REQUEST_ID,
    HeaderRules,
    filterable_headers,
    filtered_header_lines,
    relayable_headers,
)

OWN_ID = b"gw-1"
UPSTREAM = [
    (b"Content-Type", b"application/json"),
    (b"Connection", b"keep-alive"),
    (b"Content-Length", b"2"),
    (b"Transfer-Encoding", b"chunked"),
    (b"X-Model", b"caf\xe9"),
    (b"Set-Cookie", b"a=1"),
    (b"Set-Cookie", b"b=2"),
]


def reference_lines(
    headers: list[tuple[str, str]],
    rules: HeaderRules,
    own_id: bytes,
    extra: list[tuple[bytes, bytes]] | None,
) -> bytes:
    """The rendering as pairs first, then lines: what the response phase did before it wrote lines."""
    encoded = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    pairs = [(name, value) for name, value in encoded if name not in rules.remove]
    pairs.extend(rules.add_pairs)
    upstream_id = next((value for name, value in pairs if name.lower() == REQUEST_ID), None)
    if upstream_id is None:
        pairs.append((REQUEST_ID, own_id))
    elif upstream_id != own_id:
        pairs.append((TURNOUT_REQUEST_ID, own_id))
    pairs.extend(extra or ())
    return b"".join(name + b": " + value + b"\r\n" for name, value in pairs)


def test_filters_see_the_relayable_headers_decoded_with_lower_case_names() -> None:
    assert filterable_headers(UPSTREAM) == [
        ("content-type", "application/json"),
        ("x-model", "café"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]
    decoded = [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in relayable_headers(UPSTREAM)]
    assert filterable_headers(UPSTREAM) == decoded


@pytest.mark.parametrize(
    "rules",
    [
        HeaderRules(),
        HeaderRules.build(add={"x-served-by": "turnout"}, remove=["set-cookie"]),
        HeaderRules.build(add={"X-Request-ID": "route-id"}, remove=[]),
        HeaderRules.build(add={}, remove=["x-request-id"]),
    ],
)
@pytest.mark.parametrize(
    "upstream_id", [None, "gw-1", "ts-9"], ids=["no-upstream-id", "echoed-id", "own-upstream-id"]
)
@pytest.mark.parametrize("extra", [None, [(b"x-experiment", b"exp"), (b"x-arm", b"b")]])
def test_filtered_lines_are_the_pairs_rendered(
    rules: HeaderRules, upstream_id: str | None, extra: list[tuple[bytes, bytes]] | None
) -> None:
    headers = filterable_headers(UPSTREAM)
    if upstream_id is not None:
        headers.append(("x-request-id", upstream_id))
    headers.append(("x-turnout-cache", "miss"))  # as a response filter sets one

    rendered = filtered_header_lines(headers, rules, OWN_ID, extra)

    assert rendered == reference_lines(headers, rules, OWN_ID, extra)
    assert rendered.count(b"\r\n") == len(rendered.split(b"\r\n")) - 1


def test_the_gateways_id_is_added_once_and_only_where_the_answer_has_none() -> None:
    lines = filtered_header_lines([("content-type", "text/plain")], HeaderRules(), OWN_ID)
    assert lines == b"content-type: text/plain\r\nx-request-id: gw-1\r\n"
    lines = filtered_header_lines([("x-request-id", "ts-9")], HeaderRules(), OWN_ID)
    assert lines == b"x-request-id: ts-9\r\nx-turnout-request-id: gw-1\r\n"
