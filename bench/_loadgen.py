"""A closed-loop HTTP/1.1 load generator in Python, for machines without wrk.

N keep-alive connections each send a request, wait for the whole response, and send the next, until
the deadline. Every response completed inside the window is counted and its latency recorded; those
completing after the deadline are dropped, as wrk does. It is far slower than wrk (one Python
process), so against fast targets it measures itself as much as the target; the harness says which
load generator produced each figure.

    python bench/_loadgen.py --url http://127.0.0.1:9000/ --connections 32 --duration 5
                             [--header "Authorization: Bearer ..."]... [--unique-query]
prints one JSON object (a LoadResult) on its last line. With --unique-query each request gets its own
query string (``n=<count>``), as bench/unique_query.lua does for wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import httptools
from _procs import run_to_completion
from _results import LoadResult, percentile

# After the deadline, a response already in flight gets this long to finish before its connection is
# aborted and counted as an error: long enough for any sane target, short enough to keep runs bounded.
DRAIN_GRACE_S = 2.0
# Time a child run may take beyond its duration and drain grace: interpreter start-up and imports.
STARTUP_ALLOWANCE_S = 10.0
# Pause after a failed connect so a dead target costs a few hundred attempts per second, not a spin.
RECONNECT_PAUSE_S = 0.01


def request_maker(
    target: str, host: str, headers: Sequence[tuple[str, str]], unique_query: bool
) -> Callable[[], bytes]:
    """What makes each request's bytes: one fixed GET, or one whose query string counts up.

    ``target`` is the path with its query, if any; ``headers`` go with every request.
    """
    lines = [f"Host: {host}", *(f"{name}: {value}" for name, value in headers)]
    if any(char in line for line in lines for char in "\r\n"):
        raise ValueError("a header name or value cannot hold a line break")
    tail = (" HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode("latin-1")
    if not unique_query:
        fixed = b"GET " + target.encode("ascii") + tail
        return lambda: fixed
    start = b"GET " + target.encode("ascii") + (b"&n=" if "?" in target else b"?n=")
    counter = itertools.count(1)
    return lambda: b"%s%d%s" % (start, next(counter), tail)


class _Run:
    """State shared by every connection of one run."""

    __slots__ = ("deadline", "errors", "latencies", "next_request", "transports")

    def __init__(self, next_request: Callable[[], bytes], deadline: float) -> None:
        self.next_request = next_request
        self.deadline = deadline
        self.latencies: list[float] = []
        self.errors = 0
        self.transports: set[asyncio.Transport] = set()


class _Client(asyncio.Protocol):
    """One connection: request, whole response, next request, until the deadline or a close."""

    __slots__ = ("_awaiting", "_closed", "_parser", "_run", "_sent_at", "_transport")

    def __init__(self, run: _Run, closed: asyncio.Future[None]) -> None:
        self._run = run
        self._closed = closed
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._sent_at = 0.0
        self._awaiting = False  # a request is out and its response not yet complete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so this is a cast, not a check.
        self._transport = cast(asyncio.Transport, transport)
        self._run.transports.add(self._transport)
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        self._awaiting = True
        self._sent_at = time.perf_counter()
        self._transport.write(self._run.next_request())

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._awaiting = False
            self._run.errors += 1
            self._close()

    def on_message_complete(self) -> None:
        now = time.perf_counter()
        self._awaiting = False
        run = self._run
        if now > run.deadline:
            self._close()
            return
        run.latencies.append(now - self._sent_at)
        if not 200 <= self._parser.get_status_code() < 400:
            run.errors += 1
        if self._parser.should_keep_alive():
            self._send()
        else:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._run.transports.discard(self._transport)
        # A connection lost with a request unanswered, inside the window, is a failed request.
        if self._awaiting and time.perf_counter() <= self._run.deadline:
            self._run.errors += 1
        if not self._closed.done():
            self._closed.set_result(None)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def _drive(run: _Run, host: str, port: int) -> None:
    """Keep one connection busy until the deadline, reconnecting whenever the server closes it."""
    loop = asyncio.get_running_loop()
    while time.perf_counter() < run.deadline:
        closed: asyncio.Future[None] = loop.create_future()
        try:
            await loop.create_connection(functools.partial(_Client, run, closed), host, port)
        except OSError:
            run.errors += 1
            await asyncio.sleep(RECONNECT_PAUSE_S)
            continue
        await closed


async def run_load(
    url: str,
    connections: int,
    duration_s: float,
    headers: Sequence[tuple[str, str]] = (),
    unique_query: bool = False,
) -> LoadResult:
    """Load ``url`` over ``connections`` keep-alive connections for ``duration_s`` seconds, every
    request carrying ``headers`` and, with ``unique_query``, its own query string."""
    if connections < 1:
        raise ValueError("connections must be at least 1")
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only http://host:port/ URLs are supported, got {url!r}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    next_request = request_maker(path, parts.netloc, headers, unique_query)

    started = time.perf_counter()
    run = _Run(next_request, started + duration_s)
    drivers = [asyncio.create_task(_drive(run, parts.hostname, port)) for _ in range(connections)]
    _, pending = await asyncio.wait(drivers, timeout=duration_s + DRAIN_GRACE_S)
    for transport in list(run.transports):
        transport.abort()
    run.errors += len(pending)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task

    if not run.latencies:
        raise RuntimeError(f"no response from {url} within {duration_s:g}s ({run.errors} errors)")
    latencies = sorted(run.latencies)
    return LoadResult(
        requests=len(latencies),
        errors=run.errors,
        duration_s=duration_s,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
    )


@dataclass(frozen=True, slots=True)
class PythonLoadgenRunner:
    """Runs this module as a child process, through ``wrap`` (CPU pinning), and reads its JSON line;
    every request carries ``headers`` and, with ``unique_query``, a query string of its own."""

    wrap: Callable[[Sequence[str]], list[str]]
    headers: tuple[tuple[str, str], ...] = ()
    unique_query: bool = False
    name: str = "python"

    def run(self, url: str, connections: int, duration_s: float, log_path: Path) -> LoadResult:
        argv = [sys.executable, str(Path(__file__).resolve()), "--url", url]
        argv += ["--connections", str(connections), "--duration", repr(duration_s)]
        for name, value in self.headers:
            argv += ["--header", f"{name}: {value}"]
        if self.unique_query:
            argv.append("--unique-query")
        timeout_s = duration_s + DRAIN_GRACE_S + STARTUP_ALLOWANCE_S
        lines = run_to_completion(self.wrap(argv), log_path, timeout_s).strip().splitlines()
        if not lines:
            raise ValueError("the Python load generator printed nothing")
        return LoadResult.from_dict(json.loads(lines[-1]))


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f'expected "Name: value", got {text!r}')
    return name.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Closed-loop keep-alive HTTP/1.1 load generator.")
    parser.add_argument("--url", required=True, help="target, e.g. http://127.0.0.1:9000/")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to measure")
    parser.add_argument(
        "--header", type=_header, action="append", default=[], help='"Name: value", sent with every request'
    )
    parser.add_argument("--unique-query", action="store_true", help="a query string of its own per request")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        result = runner(run_load(args.url, args.connections, args.duration, args.header, args.unique_query))
    except (RuntimeError, ValueError) as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
