"""Driving wrk and reading its ``--latency`` report into a LoadResult."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from _procs import run_to_completion
from _results import LoadResult

# The wrk script that gives each request its own query string (for the cache-miss chain).
UNIQUE_QUERY_SCRIPT = Path(__file__).resolve().with_name("unique_query.lua")
# Time allowed beyond the run itself: wrk's own 2 s socket timeout for the last requests, plus start-up.
_OVERRUN_ALLOWANCE_S = 10.0

# wrk prints durations with these suffixes (its units_time table), scaled here to milliseconds.
_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_TOTALS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)", re.MULTILINE)


def wrk_command(
    url: str,
    connections: int,
    duration_s: float,
    headers: Sequence[tuple[str, str]] = (),
    unique_query: bool = False,
    script: Path | None = None,
) -> list[str]:
    """The wrk command line for one keep-alive run, sending ``headers`` with every request.

    One thread: wrk shares its CPU with the upstream when pinned, and more threads than CPUs only
    adds switching (and the unique-query script counts per thread). wrk counts whole seconds, so the
    duration is rounded up to at least one. ``script`` is a Lua script making the requests (at most
    one script: ``unique_query`` is one).
    """
    if unique_query and script is not None:
        raise ValueError("wrk runs one script: unique_query or script, not both")
    seconds = max(1, math.ceil(duration_s))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    if unique_query:
        script = UNIQUE_QUERY_SCRIPT
    if script is not None:
        argv += ["-s", str(script)]
    return [*argv, url]


def parse_wrk_output(text: str) -> LoadResult:
    """Read requests, errors, duration and p50/p99 from what ``wrk --latency`` printed."""
    percentiles = {
        int(p): float(value) * _TIME_UNITS_MS[unit] for p, value, unit in _PERCENTILE.findall(text)
    }
    totals = _TOTALS.search(text)
    if totals is None or 50 not in percentiles or 99 not in percentiles:
        raise ValueError(f"not a wrk --latency report:\n{text.strip()}")
    errors = 0
    socket_errors = _SOCKET_ERRORS.search(text)
    if socket_errors is not None:
        errors += sum(int(count) for count in socket_errors.groups())
    non_2xx = _NON_2XX.search(text)
    if non_2xx is not None:
        errors += int(non_2xx.group(1))
    requests = int(totals.group(1))
    if requests == 0:
        raise ValueError(f"wrk completed no request ({errors} errors)")
    return LoadResult(
        requests=requests,
        errors=errors,
        duration_s=float(totals.group(2)) * _TIME_UNITS_MS[totals.group(3)] / 1000,
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
    )


@dataclass(frozen=True, slots=True)
class WrkRunner:
    """Runs wrk as a child process, through ``wrap`` (CPU pinning), and parses its report; every
    request carries ``headers`` and, with ``unique_query``, a query string of its own; ``script``
    (a Lua script) makes the requests instead."""

    wrap: Callable[[Sequence[str]], list[str]]
    headers: tuple[tuple[str, str], ...] = ()
    unique_query: bool = False
    name: str = "wrk"
    script: Path | None = None

    def run(self, url: str, connections: int, duration_s: float, log_path: Path) -> LoadResult:
        command = wrk_command(url, connections, duration_s, self.headers, self.unique_query, self.script)
        argv = self.wrap(command)
        output = run_to_completion(argv, log_path, math.ceil(duration_s) + _OVERRUN_ALLOWANCE_S)
        return parse_wrk_output(output)
