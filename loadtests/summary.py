"""The operator's summary of one run: Locust's statistics, what the locustfile observed, the batcher's work.

`summary_lines` is pure: it formats what the runner collected. `problems` lists what makes a run
fail (the runner's exit status): request failures, sticky violations, 429s without Retry-After,
no traffic at all, or a Locust that failed for another reason (an exception in user code).
Lines that a scenario cannot measure are left out rather than shown as 0.

Rates are requests divided by the measured window, from the first request's start to the last
answer (the traffic report's span), not Locust's own figure, which divides by a window of its own
choosing; a window well short of the duration asked for fails the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from loadtests.batch_metrics import BatchTotals
from loadtests.locust_csv import LocustStats, RequestRow
from loadtests.traffic_report import TrafficReport

# A ramp's share over time is shown in at most this many windows: one line an operator can scan.
TIMELINE_WINDOWS = 12
CACHE_LOOKUPS = ("hit", "coalesced", "miss")
# A run whose measured window falls this much short of the duration asked for did not keep its
# word: users start within the first second and Locust stops on time, so a healthy run lands within
# a few tens of milliseconds of the asked duration; one second is the tolerance the runner promises.
SHORT_RUN_TOLERANCE_S = 1.0


@dataclass(frozen=True, slots=True)
class RunSummary:
    scenario: str
    users: int
    duration_s: float
    target: str
    stats: LocustStats
    traffic: TrafficReport | None
    """None when the locustfile wrote no report (it crashed, or ran without --turnout-stats)."""
    batching: BatchTotals | None
    """The batcher's totals over the run; None when the admin metrics could not be read."""
    locust_status: int = 0
    """Locust's exit status: 1 when requests failed or user code raised, -1 when it had to be killed."""


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _share(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def _split(counts: dict[str, int]) -> str:
    whole = sum(counts.values())
    return ", ".join(f"{name} {count} ({_share(count, whole)})" for name, count in counts.items())


def _rate(row: RequestRow, window_s: float | None) -> float:
    """Requests per second over the measured window; Locust's own rate when there is none."""
    if window_s is None:
        return row.requests_per_s
    return row.requests / window_s if window_s > 0 else 0.0


def _row_line(row: RequestRow, window_s: float | None) -> str:
    label = f"{row.kind} {row.name}".strip()
    return (
        f"  {label:<44} {row.requests:>8} req {_rate(row, window_s):>8.1f}/s  p50 {_ms(row.p50_ms):>7}"
        f"  p95 {_ms(row.p95_ms):>7}  p99 {_ms(row.p99_ms):>7}  failures {row.failures}"
    )


def _timeline(traffic: TrafficReport, arm: str) -> str:
    """The share of answers from `arm` per window of the run, e.g. "0-2s 1.0%, 2-4s 4.8%"."""
    if not traffic.arm_timeline:
        return "n/a"
    last = traffic.arm_timeline[-1][0]
    width = max(math.ceil((last + 1) / TIMELINE_WINDOWS), 1)
    windows: dict[int, list[int]] = {}
    for second, arms in traffic.arm_timeline:
        totals = windows.setdefault(second // width, [0, 0])
        totals[0] += arms.get(arm, 0)
        totals[1] += sum(arms.values())
    return ", ".join(
        f"{index * width}-{min((index + 1) * width, last + 1)}s {_share(part, whole)}"
        for index, (part, whole) in sorted(windows.items())
    )


def _cache_order(cache: dict[str, int]) -> list[str]:
    """Lookups first (hit, coalesced, miss), then any other outcome (bypass) by name."""
    return [o for o in CACHE_LOOKUPS if o in cache] + sorted(o for o in cache if o not in CACHE_LOOKUPS)


def _traffic_lines(traffic: TrafficReport, batching: BatchTotals | None) -> Iterator[str]:
    yield f"statuses: {', '.join(f'{status} x{count}' for status, count in traffic.statuses.items())}"
    yield f"429s: {traffic.rate_limited}"
    if traffic.rate_limited:
        accepted = traffic.answered_2xx / traffic.span_s if traffic.span_s else 0.0
        yield f"  accepted {accepted:.1f}/s over {traffic.span_s:.1f}s (2xx only)"
        yield f"  429s without Retry-After: {traffic.rate_limited_without_retry_after}"
    ledger = traffic.ledger
    if traffic.unit_policy == "sticky":
        yield (
            f"sticky violations: {traffic.sticky_violations} "
            f"({ledger.revisited_units} of {ledger.units} units seen more than once)"
        )
        if ledger.mixed_examples:
            yield f"  units seen in two arms, e.g.: {', '.join(ledger.mixed_examples)}"
    if traffic.arms:
        yield f"arms split (answers): {_split(traffic.arms)}"
    if ledger.units:
        yield f"arms split (units, by first arm): {ledger.units} units: {_split(ledger.units_by_first_arm)}"
    if traffic.unit_policy == "monotone" and traffic.forward_arm is not None:
        yield f"{traffic.forward_arm} share over time: {_timeline(traffic, traffic.forward_arm)}"
        yield (
            f"ramp reversals: {ledger.reversed_units} "
            f"(units back from {traffic.forward_arm}; 0 unless rolled back)"
        )
        if ledger.reversed_examples:
            yield f"  e.g.: {', '.join(ledger.reversed_examples)}"
    lookups = sum(traffic.cache.get(outcome, 0) for outcome in CACHE_LOOKUPS)
    if lookups:
        hits, coalesced = traffic.cache.get("hit", 0), traffic.cache.get("coalesced", 0)
        outcomes = ", ".join(f"{outcome} {traffic.cache[outcome]}" for outcome in _cache_order(traffic.cache))
        yield (
            f"cache hit ratio: {_share(hits, lookups)} ({outcomes}; "
            f"{_share(hits + coalesced, lookups)} answered without a backend call)"
        )
    if traffic.bursts is not None:
        bursts = traffic.bursts
        yield (
            f"bursts: {bursts.count} of {bursts.mean_size:.1f} requests, whole burst "
            f"p50 {_ms(bursts.p50_ms)}, p95 {_ms(bursts.p95_ms)}, max {_ms(bursts.max_ms)} "
            f"({bursts.unfinished} cut off at the end)"
        )
    if batching is not None and batching.batches > 0:
        yield (
            f"batching: {batching.batches:.0f} upstream batches, {batching.requests_per_batch:.2f} "
            f"requests/batch, {batching.rows_per_batch:.2f} rows/batch (gateway metrics, all routes)"
        )


def measured_window_s(summary: RunSummary) -> float | None:
    """Seconds from the first request's start to the last answer; None without a traffic report."""
    return summary.traffic.span_s if summary.traffic is not None else None


def _window_line(summary: RunSummary, window_s: float | None) -> str:
    if window_s is None:
        return "measured window: unknown (no traffic report; rates are Locust's own)"
    return (
        f"measured window: {window_s:.2f}s from the first request to the last answer "
        f"(asked {summary.duration_s:g}s, ramp-up included)"
    )


def summary_lines(summary: RunSummary) -> list[str]:
    total = summary.stats.total
    window_s = measured_window_s(summary)
    lines = [
        f"== loadtest {summary.scenario}: {summary.users} users for {summary.duration_s:g}s "
        f"against {summary.target} ==",
        _window_line(summary, window_s),
        f"requests: {total.requests} ({_rate(total, window_s):.1f} req/s), "
        f"failures: {total.failures} ({_share(total.failures, total.requests)})",
        f"latency: p50 {_ms(total.p50_ms)}, p95 {_ms(total.p95_ms)}, p99 {_ms(total.p99_ms)}, "
        f"max {_ms(total.max_ms)}",
    ]
    lines.extend(_row_line(row, window_s) for row in summary.stats.rows)
    if summary.traffic is None:
        lines.append("(no report from the locustfile: arms, 429s and cache outcomes unknown)")
    else:
        lines.extend(_traffic_lines(summary.traffic, summary.batching))
    return lines


def problems(summary: RunSummary) -> list[str]:
    """Why the run should count as failed; empty when it passed."""
    found = []
    total = summary.stats.total
    if total.requests == 0:
        found.append("no request completed")
    if total.failures:
        found.append(f"{total.failures} failed requests")
    # Locust exits with 1 for failed requests, already counted above; otherwise it hit an error.
    if summary.locust_status not in (0, 1) or (summary.locust_status == 1 and not total.failures):
        found.append(f"Locust exited with status {summary.locust_status} (see the locust log)")
    traffic = summary.traffic
    if traffic is None:
        found.append("the locustfile wrote no report")
        return found
    if traffic.requests and traffic.span_s < summary.duration_s - SHORT_RUN_TOLERANCE_S:
        found.append(f"load ran {traffic.span_s:.2f}s of the {summary.duration_s:g}s asked")
    if traffic.unit_policy == "sticky" and traffic.sticky_violations:
        found.append(f"{traffic.sticky_violations} sticky violations")
    if traffic.rate_limited_without_retry_after:
        found.append(f"{traffic.rate_limited_without_retry_after} 429s without Retry-After")
    return found
