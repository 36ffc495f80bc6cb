"""Reading wrk's --latency report."""

from __future__ import annotations

import pytest
from _wrk import parse_wrk_output, wrk_command

REPORT = """Running 10s test @ http://127.0.0.1:8080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.50us  120.00us   9.87ms   91.00%
    Req/Sec    77.10k     2.30k   80.02k    70.00%
  Latency Distribution
     50%  387.00us
     75%  450.00us
     90%  520.00us
     99%    1.25ms
  767000 requests in 10.01s, 95.10MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  76623.38
Transfer/sec:      9.50MB
"""


def test_report_gives_requests_duration_percentiles_and_errors() -> None:
    result = parse_wrk_output(REPORT)

    assert result.requests == 767000
    assert result.duration_s == pytest.approx(10.01)
    assert result.p50_ms == pytest.approx(0.387)
    assert result.p99_ms == pytest.approx(1.25)
    assert result.errors == 3 + 1 + 2 + 4
    assert result.rps == pytest.approx(767000 / 10.01)


def test_seconds_in_percentiles_are_converted_to_milliseconds() -> None:
    slow = REPORT.replace("99%    1.25ms", "99%    2.50s").replace("10.01s", "1.00m")

    result = parse_wrk_output(slow)

    assert result.p99_ms == pytest.approx(2500.0)
    assert result.duration_s == pytest.approx(60.0)


def test_a_report_without_latency_distribution_is_refused() -> None:
    with pytest.raises(ValueError, match="not a wrk --latency report"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_a_run_with_no_request_is_refused() -> None:
    empty = REPORT.replace("767000 requests", "0 requests")
    with pytest.raises(ValueError, match="no request"):
        parse_wrk_output(empty)


def test_command_uses_whole_seconds_one_thread_and_latency() -> None:
    assert wrk_command("http://127.0.0.1:9/", 128, 0.4) == [
        "wrk",
        "-t1",
        "-c128",
        "-d1s",
        "--latency",
        "http://127.0.0.1:9/",
    ]
    assert "-d10s" in wrk_command("http://127.0.0.1:9/", 32, 10.0)
