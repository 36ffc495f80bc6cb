"""Locust's CSV statistics and the traffic report -> the operator's summary and the run's verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.batch_metrics import BatchTotals
from loadtests.bursts import BurstReport
from loadtests.ledger import LedgerReport
from loadtests.locust_csv import LocustStats, parse_stats_csv, read_stats_csv
from loadtests.summary import RunSummary, problems, summary_lines
from loadtests.traffic_report import TrafficReport, UnitPolicy

# As Locust 2.x writes it (header, one line per request name, the Aggregated line last).
STATS_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,\
Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,\
99.99%,100%
POST,/v2/models/diabetes/infer,120,0,1,0.74,0.38,3.13,122.8,54.83,0.0,1,1,1,1,1,1,2,3,3,3,3
POST,/v2/models/risk/infer,95,2,4,5.1,0.39,40.6,201.5,43.4,0.9,4,5,5,6,8,22,25,26,27,27,27
grpc,ModelInfer risk v1,0,0,0,0.0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A
,Aggregated,215,2,2,2.7,0.38,40.6,171.1,98.23,0.9,2,3,4,5,6,21,24,26,27,27,27
"""


def stats() -> LocustStats:
    return parse_stats_csv(STATS_CSV)


def traffic(
    unit_policy: UnitPolicy | None = "sticky",
    mixed: int = 0,
    limited: int = 0,
    bare_429: int = 0,
    cache: dict[str, int] | None = None,
    timeline: tuple[tuple[int, dict[str, int]], ...] = (),
    reversed_units: int = 0,
    bursts: BurstReport | None = None,
) -> TrafficReport:
    return TrafficReport(
        scenario="ab",
        unit_policy=unit_policy,
        forward_arm="candidate" if unit_policy == "monotone" else None,
        requests=215,
        span_s=10.0,
        statuses={"200": 100, "429": limited} if limited else {"200": 215},
        arms={"control": 120, "treatment": 95},
        ledger=LedgerReport(
            units=150,
            revisited_units=40,
            units_by_first_arm={"control": 75, "treatment": 75},
            mixed_units=mixed,
            reversed_units=reversed_units,
            mixed_examples=tuple(f"user-{n}" for n in range(mixed)),
            reversed_examples=(),
        ),
        cache=cache or {},
        rate_limited=limited,
        rate_limited_without_retry_after=bare_429,
        arm_timeline=timeline,
        bursts=bursts,
    )


def summary(report: TrafficReport | None, batching: BatchTotals | None = None) -> RunSummary:
    return RunSummary("ab", 50, 10.0, "http://127.0.0.1:8080", stats(), report, batching)


def test_the_csv_gives_typed_rows_and_the_aggregated_total() -> None:
    parsed = stats()
    assert [row.name for row in parsed.rows] == [
        "/v2/models/diabetes/infer",
        "/v2/models/risk/infer",
        "ModelInfer risk v1",
    ]
    total = parsed.total
    assert (total.requests, total.failures, total.requests_per_s) == (215, 2, 98.23)
    assert (total.p50_ms, total.p95_ms, total.p99_ms, total.max_ms) == (2, 21, 26, 40.6)
    assert parsed.rows[2].p99_ms is None  # N/A: no request completed


def test_a_file_that_is_not_locust_stats_is_refused() -> None:
    with pytest.raises(ValueError, match="missing columns"):
        parse_stats_csv("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no Aggregated row"):
        parse_stats_csv(STATS_CSV.rsplit(",Aggregated", 1)[0])


def test_the_final_copy_is_preferred_over_locusts_last_refresh(tmp_path: Path) -> None:
    prefix = tmp_path / "ab-1"
    (tmp_path / "ab-1_stats.csv").write_text(STATS_CSV.replace(",Aggregated,215,", ",Aggregated,200,"))
    assert read_stats_csv(prefix).total.requests == 200
    (tmp_path / "ab-1_final_stats.csv").write_text(STATS_CSV)
    assert read_stats_csv(prefix).total.requests == 215


def test_summary_has_rate_latency_failures_429s_and_sticky_line() -> None:
    text = "\n".join(summary_lines(summary(traffic())))
    # 215 requests over the 10 s window, not Locust's own 98.23/s.
    assert "requests: 215 (21.5 req/s), failures: 2 (0.9%)" in text
    assert (
        "measured window: 10.00s from the first request to the last answer (asked 10s, ramp-up included)"
        in text
    )
    assert "latency: p50 2 ms, p95 21 ms, p99 26 ms, max 41 ms" in text
    assert "429s: 0" in text
    assert "sticky violations: 0 (40 of 150 units seen more than once)" in text
    assert "arms split (answers): control 120 (55.8%), treatment 95 (44.2%)" in text
    assert "arms split (units, by first arm): 150 units: control 75 (50.0%), treatment 75 (50.0%)" in text
    assert "cache hit ratio" not in text


def test_sticky_violations_are_printed_with_examples_and_fail_the_run() -> None:
    report = traffic(mixed=2)
    text = "\n".join(summary_lines(summary(report)))
    assert "sticky violations: 2 " in text
    assert "user-0, user-1" in text
    assert "2 sticky violations" in problems(summary(report))


def test_scenarios_without_units_print_no_sticky_line() -> None:
    text = "\n".join(summary_lines(summary(traffic(unit_policy=None))))
    assert "sticky violations" not in text


def test_rate_limited_runs_show_accepted_rate_and_flag_429s_without_retry_after() -> None:
    report = traffic(unit_policy=None, limited=115, bare_429=3)
    text = "\n".join(summary_lines(summary(report)))
    assert "429s: 115" in text
    assert "accepted 10.0/s over 10.0s" in text
    assert "429s without Retry-After: 3" in text
    assert "3 429s without Retry-After" in problems(summary(report))


def test_cache_hit_ratio_counts_hits_over_lookups() -> None:
    report = traffic(unit_policy=None, cache={"hit": 90, "coalesced": 2, "miss": 8, "bypass": 5})
    text = "\n".join(summary_lines(summary(report)))
    assert "cache hit ratio: 90.0% (" in text
    assert "92.0% answered without a backend call" in text


def test_canary_shows_candidate_share_per_window_and_reversals() -> None:
    timeline = tuple((second, {"baseline": 99 - second, "candidate": 1 + second}) for second in range(24))
    report = traffic(unit_policy="monotone", timeline=timeline, reversed_units=1)
    lines = summary_lines(summary(report))
    share = next(line for line in lines if line.startswith("candidate share over time:"))
    # 24 seconds in at most 12 windows: 2 s each; the first holds seconds 0 and 1 (1 + 2 of 200).
    assert share.startswith("candidate share over time: 0-2s 1.5%, 2-4s 3.5%,")
    assert share.count("s ") == 12
    assert any(line.startswith("ramp reversals: 1 ") for line in lines)
    assert not any("sticky violations" in line for line in lines)
    assert "sticky violations" not in " ".join(problems(summary(report)))


def test_bursts_and_batching_are_reported_when_measured() -> None:
    bursts = BurstReport(count=40, unfinished=1, mean_size=16.0, p50_ms=12.0, p95_ms=30.0, max_ms=45.0)
    batching = BatchTotals(batches=50.0, rows=400.0, requests=200.0)
    text = "\n".join(summary_lines(summary(traffic(bursts=bursts), batching)))
    assert "bursts: 40 of 16.0 requests, whole burst p50 12 ms, p95 30 ms, max 45 ms (1 cut off" in text
    assert "batching: 50 upstream batches, 4.00 requests/batch, 8.00 rows/batch" in text
    assert "batching:" not in "\n".join(summary_lines(summary(traffic(), BatchTotals(0.0, 0.0, 0.0))))


def test_a_run_without_a_traffic_report_says_so_and_fails() -> None:
    lines = summary_lines(summary(None))
    assert any("no report from the locustfile" in line for line in lines)
    assert "the locustfile wrote no report" in problems(summary(None))


def test_locust_errors_other_than_failed_requests_fail_the_run() -> None:
    clean = parse_stats_csv(
        STATS_CSV.replace(",95,2,", ",95,0,").replace(",Aggregated,215,2,", ",Aggregated,215,0,")
    )
    crashed_users = RunSummary("ab", 1, 1.0, "http://127.0.0.1:8080", clean, traffic(), None, locust_status=1)
    assert problems(crashed_users) == ["Locust exited with status 1 (see the locust log)"]
    killed = RunSummary("ab", 1, 1.0, "http://127.0.0.1:8080", stats(), traffic(), None, locust_status=-1)
    assert "Locust exited with status -1 (see the locust log)" in problems(killed)
    # Status 1 with failed requests is those failures, reported once.
    failed = RunSummary("ab", 1, 1.0, "http://127.0.0.1:8080", stats(), traffic(), None, locust_status=1)
    assert problems(failed) == ["2 failed requests"]


def test_failed_requests_fail_the_run_and_a_clean_run_passes() -> None:
    assert "2 failed requests" in problems(summary(traffic()))
    clean = parse_stats_csv(
        STATS_CSV.replace(",95,2,", ",95,0,").replace(",Aggregated,215,2,", ",Aggregated,215,0,")
    )
    assert problems(RunSummary("ab", 1, 1.0, "http://127.0.0.1:8080", clean, traffic(), None)) == []


def test_rates_are_requests_over_the_measured_window() -> None:
    lines = summary_lines(summary(traffic()))
    rows = [line for line in lines if line.startswith("  POST")]
    # 120 and 95 requests over 10 s, where Locust's CSV says 54.83/s and 43.4/s.
    assert " 120 req     12.0/s " in rows[0]
    assert "  95 req      9.5/s " in rows[1]


def test_without_a_traffic_report_the_window_is_unknown_and_locusts_rate_is_shown() -> None:
    text = "\n".join(summary_lines(summary(None)))
    assert "measured window: unknown" in text
    assert "requests: 215 (98.2 req/s)" in text


def test_a_run_that_stopped_early_fails() -> None:
    """The load ran 10 s of the 20 s asked: the runner broke its word, and says so."""
    asked_20s = RunSummary("ab", 50, 20.0, "http://127.0.0.1:8080", stats(), traffic(), None)
    assert "load ran 10.00s of the 20s asked" in problems(asked_20s)
    # Within the one-second tolerance it passes.
    asked_11s = RunSummary("ab", 50, 11.0, "http://127.0.0.1:8080", stats(), traffic(), None)
    assert not any(problem.startswith("load ran") for problem in problems(asked_11s))
