"""Fuzzing the HTTP/1.1 parser and framing over a real socket, against a gateway in its own process.

Each example sends random request lines, headers and bodies (Content-Length and chunked framing,
right and wrong, pipelined), then half-closes the connection, and holds the gateway to four rules:
every answer is well-formed HTTP/1.1 and the connection ends within a bound (never a hang); no
answer is a 500 (no crash inside the data path); the process is still serving afterwards; and no
request reaches the upstream under the `/limited/` route's prefix without that route's key, however
the upstream (aiohttp, which decodes the path) reads the path it was sent.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httptools
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import gateway_config
from tests.support.processes import GatewayProcess, Process, http_ok, start_gateway

KEY = "fuzz-key"
# The gateway's head-read timeout; kept short so a request it must time out costs little.
HEADER_TIMEOUT_S = 1.0
# An example's connection must end within this: the longest the gateway may wait (the upstream's
# request timeout, 3 s, below), a sweep (0.5 s) and slack for a busy 2-core machine. A hang fails the
# example instead of blocking the test.
CONNECTION_DEADLINE_S = 8.0
# Modest counts: the whole file runs in well under a minute on a busy 2-core machine.
FUZZ = settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

UPSTREAM_NAME = "a"  # the session upstream's name, which every echo answer carries


@pytest.fixture(scope="module")
def gateway(upstream_a: Process, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    guard = {
        "auth_apikey": {"keys": [{"sha256": hashlib.sha256(KEY.encode()).hexdigest(), "principal": "p"}]}
    }
    backend = {"cluster": "up"}
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[
            {"name": "limited", "match": {"prefix": "/limited/"}, "backend": backend, "filters": [guard]},
            {"name": "open", "match": {"prefix": "/"}, "backend": backend},
        ],
        listen={
            "header_timeout": f"{HEADER_TIMEOUT_S}s",
            "idle_timeout": "1s",
            "max_body_bytes": 4096,
            "max_header_bytes": 4096,
            "max_headers": 30,
        },
        cluster={"timeouts": {"request": "3s"}},
    )
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    process = start_gateway(path, config["listen"]["port"], config["admin"]["port"], directory)
    yield process
    process.stop()


# ----- what a hostile client sends -----

# Spellings of the guarded prefix among pieces that could turn other paths into it.
PATH_PIECES = [
    *("/", "//", ".", "..", "/../", "%2e", "%2E%2e", "%6C", "imited", "a", "~", "%25", "%69"),
    *("limited/", "%6Cimited/", "lim%69ted/", "%6cimited/", "limited", "/limited/"),
]
HOSTILE_PIECES = ["%2f", "%5C", "\\", "%", "%zz", "#", "%00", "\x00", " ", "\t", "\x7f", "\xff", "&", ";"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
ODD_METHODS = ["get", "G ET", "", "PRI", "CONNECT", "X" * 40]
ODD_VERSIONS = ["HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "", "HTTP/11", "HTTP/1.1 x"]
HEADER_NAMES = [
    *("Host", "Content-Length", "Transfer-Encoding", "Connection", "Expect", "Cookie", "X-Forwarded-For"),
    *("Content-Type", "X-Request-Id", "Host ", " Host", "Trailer", "Upgrade", "X-A", ""),
]
HEADER_VALUES = [
    *("t", "0", "5", "-1", " 5", "5, 5", "99999999999999999999", "chunked", "gzip, chunked", "chunked, gzip"),
    *("identity", "close", "keep-alive", "Upgrade", "100-continue", "websocket", "", "\x00", "a\rb", "\xff"),
]
TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=6)


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` four times in five: most requests get past the parser to the routes and filters,
    where the interesting bugs are, and the rest still try the parser."""
    return st.integers(0, 4).flatmap(lambda roll: rare if roll == 4 else usual)


piece = mostly(st.sampled_from(PATH_PIECES), st.one_of(st.sampled_from(HOSTILE_PIECES), TEXT))
paths = st.lists(piece, max_size=8).map(lambda parts: "/" + "".join(parts))
targets = mostly(paths, st.sampled_from(["*", "http://t/limited/x", "http://t/%6Cimited/x", "t:80", ""]))
headers = st.lists(
    mostly(st.tuples(st.sampled_from(HEADER_NAMES), st.sampled_from(HEADER_VALUES)), st.tuples(TEXT, TEXT)),
    max_size=4,
)


@st.composite
def chunked_bodies(draw: st.DrawFn) -> str:
    """Chunked framing, mostly right: sizes that lie, bad hex, extensions, missing ends, trailers."""
    out = []
    for data in draw(st.lists(st.text("abc\r\n", max_size=12), max_size=4)):
        size = draw(
            mostly(st.just(f"{len(data):x}"), st.sampled_from([f"{len(data) + 1:x}", "zz", "-1", "1;x=1"]))
        )
        out.append(f"{size}\r\n{data}\r\n")
    out.append(draw(mostly(st.just("0\r\n\r\n"), st.sampled_from(["0\r\nTrailer: x\r\n\r\n", "", "0\r\n"]))))
    return "".join(out)


@st.composite
def requests(draw: st.DrawFn) -> str:
    method = draw(mostly(st.sampled_from(METHODS), st.one_of(st.sampled_from(ODD_METHODS), TEXT)))
    target = draw(targets)
    version = draw(mostly(st.just("HTTP/1.1"), st.sampled_from(ODD_VERSIONS)))
    line_end = draw(mostly(st.just("\r\n"), st.just("\n")))
    lines = [f"{method} {target} {version}".rstrip(" ") if version else f"{method} {target}"]
    if draw(mostly(st.just(True), st.just(False))):
        lines.append("Host: t")
    lines += [f"{name}: {value}" for name, value in draw(headers) if name.strip().lower() != "x-api-key"]
    body = ""
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    if framing == "length":
        body = draw(st.text("xyz", max_size=20))
        stated = draw(mostly(st.just(len(body)), st.sampled_from([len(body) + 3, max(len(body) - 1, 0)])))
        lines.append(f"Content-Length: {stated}")
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        body = draw(chunked_bodies())
    return line_end.join(lines) + line_end + line_end + body


# ----- what comes back -----


@dataclass
class _Answers:
    """httptools callbacks collecting each response's status and body."""

    parser: Any = None
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    complete: int = 0

    def on_message_begin(self) -> None:
        self.bodies.append(b"")

    def on_headers_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        self.bodies[-1] += body

    def on_message_complete(self) -> None:
        self.complete += 1


def _exchange(port: int, data: bytes) -> tuple[_Answers, bytes]:
    """Send `data`, half-close, and read until the gateway closes; fails past the deadline."""
    deadline = time.monotonic() + CONNECTION_DEADLINE_S
    received = []
    with socket.create_connection(("127.0.0.1", port), timeout=CONNECTION_DEADLINE_S) as conn:
        try:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-send: what was answered before is still read below
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the gateway neither answered nor closed: {data!r}"
            conn.settimeout(remaining)
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                pytest.fail(
                    f"the gateway neither answered nor closed within {CONNECTION_DEADLINE_S}s: {data!r}"
                )
            if not chunk:
                break
            received.append(chunk)
    raw = b"".join(received)
    answers = _Answers()
    answers.parser = httptools.HttpResponseParser(answers)
    answers.parser.feed_data(raw)  # raises on a malformed answer
    # Every answer is complete, but for a last one that ends with the connection (HTTP/1.0).
    assert answers.complete >= len(answers.statuses) - 1, raw
    return answers, raw


def _decoded_segments_normalised(path: str) -> str:
    """What a decoding, normalising upstream makes of the path it was sent."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment not in ("", "."):
            kept.append(segment)
    return "/" + "/".join(kept) + ("/" if path.endswith("/") else "")


def _check(gateway: GatewayProcess, data: bytes) -> _Answers:
    answers, raw = _exchange(gateway.port, data)
    for status in answers.statuses:
        event(f"status {status}")
    assert 500 not in answers.statuses, raw
    for status, body in zip(answers.statuses, answers.bodies, strict=False):
        if status == 200 and body.startswith(b"{"):
            # Not orjson: the echo writes undecodable header bytes as lone surrogates.
            echoed = json.loads(body)
            if echoed.get("name") == UPSTREAM_NAME:
                seen = _decoded_segments_normalised(echoed["path"])
                assert not seen.startswith("/limited/"), (
                    f"{data!r} reached {echoed['path']!r} without the key"
                )
    assert gateway.proc.poll() is None, gateway.log()[-4000:]
    return answers


@FUZZ
@given(st.lists(requests(), min_size=1, max_size=3))
def test_random_requests_are_answered_or_closed_and_never_escape_a_route(
    gateway: GatewayProcess, pipelined: list[str]
) -> None:
    _check(gateway, "".join(pipelined).encode("latin-1"))


@FUZZ
@given(
    mostly(st.lists(st.sampled_from(PATH_PIECES), max_size=10), st.lists(piece, max_size=10)),
    st.sampled_from(["", "?a=%2F&b=.."]),
)
def test_random_paths_never_escape_a_route(gateway: GatewayProcess, pieces: list[str], query: str) -> None:
    target = "/" + "".join(pieces) + query
    data = f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode("latin-1")
    answers = _check(gateway, data)
    assert len(answers.statuses) <= 1


UNFINISHED = [
    "GET /limited/x HTTP/1.1\r\nHo",
    "GET /%6Cimi",
    "GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab",
    "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    "POST /limited/x HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab",
]


@settings(max_examples=len(UNFINISHED), deadline=None, database=None)
@given(st.sampled_from(UNFINISHED))
def test_a_request_left_unfinished_on_an_open_connection_is_timed_out(
    gateway: GatewayProcess, data: str
) -> None:
    # No half-close here: the gateway alone must end the connection (head-read timeout, or the
    # upstream's request timeout for a body that never ends).
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=CONNECTION_DEADLINE_S) as conn:
        conn.sendall(data.encode("latin-1"))
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    assert time.monotonic() - started < CONNECTION_DEADLINE_S
    status = re.match(rb"HTTP/1\.1 (\d{3}) ", received)
    # 401: the guard answers before reading a body; the others end an unfinished request.
    assert status is None or status.group(1) in (b"401", b"408", b"400", b"504", b"502"), received
    assert gateway.proc.poll() is None
    assert http_ok(f"http://127.0.0.1:{gateway.admin_port}/readyz")


def test_the_guarded_route_is_guarded(gateway: GatewayProcess) -> None:
    # The control for the rules above: the same gateway refuses /limited/ without the key and serves it
    # with the key, so "never reached without the key" is a property of the gateway, not of the test.
    refused, _ = _exchange(gateway.port, b"GET /%6Cimited/x HTTP/1.1\r\nHost: t\r\n\r\n")
    allowed, _ = _exchange(
        gateway.port, f"GET /%6Cimited/x HTTP/1.1\r\nHost: t\r\nx-api-key: {KEY}\r\n\r\n".encode()
    )
    assert refused.statuses == [401]
    assert allowed.statuses == [200]
    assert json.loads(allowed.bodies[0])["path"] == "/limited/x"
