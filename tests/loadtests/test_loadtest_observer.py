"""The traffic observer, fed Locust-shaped request events with stand-in responses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from loadtests.observer import (
    BURST_KEY,
    BURST_SIZE_KEY,
    NO_ANSWER,
    STATUS_KEY,
    UNIT_KEY,
    TrafficObserver,
)
from loadtests.traffic_report import TrafficReport

T0 = 1_700_000_000.25


class Headers(dict[str, str]):
    """Case-insensitive lookups, like the headers of Locust's responses."""

    def get(self, key: str, default: Any = None) -> Any:
        for name, value in self.items():
            if name.lower() == key.lower():
                return value
        return default


@dataclass
class Answer:
    status_code: int
    headers: Headers = field(default_factory=Headers)


def event(
    observer: TrafficObserver,
    answer: Answer | None,
    at: float = T0,
    ms: float = 10.0,
    context: dict[str, Any] | None = None,
) -> None:
    observer.on_request(
        request_type="POST",
        name="/infer",
        response=answer,
        context=context,
        start_time=at,
        response_time=ms,
        response_length=0,
        exception=None,
        url="http://127.0.0.1/infer",
    )


def test_arms_are_counted_per_answer_and_checked_per_unit() -> None:
    observer = TrafficObserver("ab", unit_policy="sticky")
    event(observer, Answer(200, Headers({"X-Turnout-Arm": "control"})), context={UNIT_KEY: "u1"})
    event(observer, Answer(200, Headers({"x-turnout-arm": "control"})), context={UNIT_KEY: "u1"})
    event(observer, Answer(200, Headers({"x-turnout-arm": "treatment"})), context={UNIT_KEY: "u1"})
    event(observer, Answer(200, Headers({"x-turnout-arm": "treatment"})), context={UNIT_KEY: "u2"})
    # An arm without a unit counts in the split but cannot be checked for stickiness.
    event(observer, Answer(200, Headers({"x-turnout-arm": "treatment"})))
    report = observer.report()
    assert report.arms == {"control": 2, "treatment": 3}
    assert report.sticky_violations == 1
    assert report.ledger.units == 2
    assert report.ledger.mixed_examples == ("u1",)


def test_statuses_include_answers_without_a_response() -> None:
    observer = TrafficObserver("oip", unit_policy=None)
    event(observer, Answer(200))
    event(observer, Answer(503))
    event(observer, None)
    event(observer, None, context={STATUS_KEY: "UNAVAILABLE"})
    assert observer.report().statuses == {"200": 1, "503": 1, NO_ANSWER: 1, "UNAVAILABLE": 1}
    assert observer.report().requests == 4


def test_429s_are_counted_apart_and_those_without_retry_after_flagged() -> None:
    observer = TrafficObserver("ratelimit", unit_policy=None)
    event(observer, Answer(200))
    event(observer, Answer(429, Headers({"Retry-After": "1"})))
    event(observer, Answer(429, Headers({"Retry-After": "1"})))
    event(observer, Answer(429))
    report = observer.report()
    assert report.rate_limited == 3
    assert report.rate_limited_without_retry_after == 1
    assert report.answered_2xx == 1


def test_cache_outcomes_are_counted_when_the_header_is_present() -> None:
    observer = TrafficObserver("cache", unit_policy=None)
    for outcome in ("miss", "hit", "hit", "coalesced"):
        event(observer, Answer(200, Headers({"x-turnout-cache": outcome})))
    event(observer, Answer(200))
    assert observer.report().cache == {"coalesced": 1, "hit": 2, "miss": 1}


def test_the_arm_timeline_counts_per_second_since_the_first_request() -> None:
    observer = TrafficObserver("canary", unit_policy="monotone", forward_arm="candidate")
    baseline = Answer(200, Headers({"x-turnout-arm": "baseline"}))
    candidate = Answer(200, Headers({"x-turnout-arm": "candidate"}))
    event(observer, baseline, at=T0)
    event(observer, baseline, at=T0 + 0.5)
    event(observer, candidate, at=T0 + 2.0)
    # Reported late but started first: the timeline still starts at its second.
    event(observer, baseline, at=T0 - 1.0, ms=1500.0)
    report = observer.report()
    assert report.arm_timeline == ((0, {"baseline": 1}), (1, {"baseline": 2}), (3, {"candidate": 1}))
    assert report.span_s == pytest.approx(3.01)


def test_bursts_are_timed_from_first_start_to_last_end() -> None:
    observer = TrafficObserver("batching", unit_policy="sticky")
    burst = {BURST_KEY: "b1", BURST_SIZE_KEY: 3}
    event(observer, Answer(200), at=T0, ms=10.0, context=burst)
    event(observer, Answer(200), at=T0 + 0.002, ms=30.0, context=burst)
    assert observer.report().bursts is not None
    assert observer.report().bursts.count == 0  # type: ignore[union-attr]
    event(observer, Answer(200), at=T0 + 0.001, ms=5.0, context=burst)
    bursts = observer.report().bursts
    assert bursts is not None
    assert (bursts.count, bursts.unfinished, bursts.mean_size) == (1, 0, 3.0)
    assert abs(bursts.max_ms - 32.0) < 1e-3


def test_no_bursts_means_no_burst_report() -> None:
    observer = TrafficObserver("oip", unit_policy=None)
    event(observer, Answer(200))
    assert observer.report().bursts is None


def test_the_report_survives_its_json_round_trip() -> None:
    observer = TrafficObserver("canary", unit_policy="monotone", forward_arm="candidate")
    event(observer, Answer(200, Headers({"x-turnout-arm": "candidate"})), context={UNIT_KEY: "u"})
    event(observer, Answer(200, Headers({"x-turnout-arm": "baseline"})), at=T0 + 1, context={UNIT_KEY: "u"})
    event(observer, Answer(429), context={BURST_KEY: "b", BURST_SIZE_KEY: 2})
    report = observer.report()
    assert TrafficReport.from_json(report.to_json()) == report
    assert report.ledger.reversed_units == 1
