"""The chains against a real gateway in front of bench/upstream.py: one request at a time, no load."""

from __future__ import annotations

import contextlib
import http.client
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _chains import Chain, build_chain
from _procs import free_port, http_status, start_service
from _turnout import turnout_argv, turnout_config, turnout_path, turnout_ready

UPSTREAM = Path(__file__).resolve().parents[2] / "bench" / "upstream.py"
# Bounds on start-up only (turnout imports its whole stack); a broken start fails instead of hanging.
START_TIMEOUT_S = 30.0


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def _gateway(stack: contextlib.ExitStack, tmp_path: Path, chain: Chain) -> int:
    """bench/upstream.py and a turnout with ``chain`` in front of it; returns turnout's port."""
    turnout = turnout_path()
    if turnout is None:
        pytest.skip("the turnout command is not installed")
    upstream = free_port()
    start_service(
        stack,
        [sys.executable, str(UPSTREAM), "--port", str(upstream)],
        tmp_path / "upstream.log",
        lambda: http_status(upstream) == 200,
        "upstream",
        START_TIMEOUT_S,
    )
    port, admin = free_port(), free_port()
    config = tmp_path / "turnout.yaml"
    config.write_text(turnout_config(port, admin, upstream, None, chain.filters))
    start_service(
        stack,
        turnout_argv(turnout, config),
        tmp_path / "turnout.log",
        lambda: turnout_ready(port, admin, chain.headers),
        "turnout",
        START_TIMEOUT_S,
    )
    return port


def _get(port: int, path: str, headers: tuple[tuple[str, str], ...]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=START_TIMEOUT_S)
    try:
        conn.request("GET", path, headers=dict(headers))
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def test_typical_chain_accepts_the_token_and_every_unique_query_misses(
    stack: contextlib.ExitStack, tmp_path: Path
) -> None:
    chain = build_chain("typical")
    port = _gateway(stack, tmp_path, chain)

    first = _get(port, "/?n=1", chain.headers)
    second = _get(port, "/?n=2", chain.headers)
    repeated = _get(port, "/?n=1", chain.headers)
    anonymous = _get(port, "/?n=3", ())

    assert (first.status, first.getheader("x-turnout-cache")) == (200, "miss")
    assert (second.status, second.getheader("x-turnout-cache")) == (200, "miss")
    assert first.getheader("ratelimit") is not None  # the rate limiter counted it
    # The cache is live: only a query string already seen is a hit, so the load's misses are real.
    assert (repeated.status, repeated.getheader("x-turnout-cache")) == (200, "hit")
    assert anonymous.status == 401


def test_cache_hit_chain_answers_repeated_requests_from_the_cache(
    stack: contextlib.ExitStack, tmp_path: Path
) -> None:
    chain = build_chain("cache-hit")
    port = _gateway(stack, tmp_path, chain)

    answers = [_get(port, "/", chain.headers) for _ in range(2)]

    assert [answer.status for answer in answers] == [200, 200]
    assert answers[1].getheader("x-turnout-cache") == "hit"
