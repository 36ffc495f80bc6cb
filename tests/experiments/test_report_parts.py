"""The report's pure parts: time series against a brute-force recount, the timeline, number formats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.analysis_events import ArmEvents, ExperimentEvents, FeedbackEvents, PhaseExposures
from experiments.analysis_settings import AnalysisSettings
from experiments.events import Decision
from experiments.report import text
from experiments.report.series import checkpoints, exposure_series, lift_series
from experiments.report.timeline import shadow_agreement, timeline
from experiments.stats import (
    Looks,
    RatioSummary,
    SequentialSettings,
    confidence_sequence,
    ratio_difference,
)

SETTINGS = AnalysisSettings(alpha=0.05, expected_units=600, burn_in=20)


def test_checkpoints_are_bounded_sorted_and_keep_the_last_time() -> None:
    times = np.random.default_rng(1).uniform(0.0, 100.0, 5000)
    points = checkpoints(times, limit=200)
    assert len(points) <= 200 and points[-1] == times.max() and points[0] == times.min()
    assert np.all(np.diff(points) > 0)
    few = np.array([3.0, 1.0, 1.0, 2.0, math.nan])
    assert list(checkpoints(few)) == [1.0, 2.0, 3.0]


def _arm(rng: np.random.Generator, units: int, error_rate: float) -> ArmEvents:
    """Units exposed at random times, each with 1-5 requests after it and 0-2 feedback values."""
    exposure_time = rng.uniform(0.0, 1000.0, units)
    per_unit = rng.integers(1, 6, units)
    outcome_unit = np.repeat(np.arange(units), per_unit)
    outcome_time = exposure_time[outcome_unit] + rng.uniform(0.0, 200.0, outcome_unit.size)
    feedback_unit = np.repeat(np.arange(units), rng.integers(0, 3, units))
    return ArmEvents(
        exposure_time=exposure_time,
        exposure_unit=np.arange(units, dtype=np.int64),
        outcome_time=outcome_time,
        outcome_unit=outcome_unit.astype(np.int64),
        latency=rng.lognormal(-3.0, 0.5, outcome_unit.size),
        error=(rng.random(outcome_unit.size) < error_rate).astype(np.float64),
        feedback={
            "feedback:revenue": FeedbackEvents(
                time=exposure_time[feedback_unit] + rng.uniform(0.0, 300.0, feedback_unit.size),
                unit=feedback_unit.astype(np.int64),
                value=rng.exponential(5.0, feedback_unit.size),
            )
        },
    )


def _recount(arm: ArmEvents, metric: str, at: float) -> tuple[int, RatioSummary]:
    """Per-unit totals of everything up to `at`, summarised directly (no running sums)."""
    seen = np.unique(np.concatenate([
        arm.exposure_unit[arm.exposure_time <= at],
        arm.outcome_unit[arm.outcome_time <= at],
        arm.feedback["feedback:revenue"].unit[arm.feedback["feedback:revenue"].time <= at],
    ]))  # fmt: skip
    size = int(arm.exposure_unit.size)
    if metric == "feedback:revenue":
        events = arm.feedback[metric]
        upto = events.time <= at
        numerator = np.bincount(events.unit[upto], weights=events.value[upto], minlength=size)
        denominator = np.ones(size)
    else:
        upto = arm.outcome_time <= at
        values = arm.error if metric == "error_rate" else arm.latency
        numerator = np.bincount(arm.outcome_unit[upto], weights=values[upto], minlength=size)
        denominator = np.bincount(arm.outcome_unit[upto], minlength=size).astype(np.float64)
    return int(seen.size), RatioSummary.from_units(numerator[seen], denominator[seen])


@pytest.mark.parametrize("metric", ["error_rate", "latency", "feedback:revenue"])
def test_lift_at_every_point_equals_a_recount_of_the_events_so_far(metric: str) -> None:
    rng = np.random.default_rng(2)
    events = ExperimentEvents(0, {"a": _arm(rng, 300, 0.05), "b": _arm(rng, 280, 0.10)}, {})
    series = lift_series(events, "a", "b", metric, SETTINGS)
    assert 50 < len(series.time) <= 200
    sequential = SequentialSettings(n_star=600, alpha=0.05, burn_in=20)
    for i in range(0, len(series.time), 17):
        at = series.time[i]
        n_a, summary_a = _recount(events.arms["a"], metric, at)
        n_b, summary_b = _recount(events.arms["b"], metric, at)
        assert (series.control_units[i], series.treatment_units[i]) == (n_a, n_b)
        expected = ratio_difference(summary_a, summary_b)
        assert series.difference[i] == pytest.approx(float(expected.estimate), rel=1e-9, abs=1e-12)
        assert series.control_value[i] == pytest.approx(float(summary_a.ratio), rel=1e-9)
        look = Looks(
            np.array([float(expected.estimate)]), np.array([float(expected.standard_error)]),
            np.array([float(n_a + n_b)]), np.array([float(min(n_a, n_b))]),
        )  # fmt: skip
        low, high = confidence_sequence(look, sequential, intersect=False)
        # The band is the running intersection over every earlier look: inside this look's bounds.
        assert series.cs_low[i] >= low[0] - 1e-12 and series.cs_high[i] <= high[0] + 1e-12
    assert math.isinf(series.cs_low[0]) and math.isfinite(series.cs_low[-1])
    lows, highs = np.array(series.cs_low), np.array(series.cs_high)
    assert (lows == np.maximum.accumulate(lows)).all() and (highs == np.minimum.accumulate(highs)).all()


def test_lift_is_empty_without_events_of_the_metric() -> None:
    rng = np.random.default_rng(3)
    arm = _arm(rng, 50, 0.1)
    events = ExperimentEvents(0, {"a": arm, "b": arm}, {})
    assert lift_series(events, "a", "b", "feedback:missing", SETTINGS).time == ()
    assert lift_series(events, "a", "absent", "error_rate", SETTINGS).time == ()


def test_exposures_count_a_unit_once_per_phase() -> None:
    phase0 = PhaseExposures(
        times={"a": np.array([1.0, 2.0, 3.0]), "b": np.array([2.5])},
        unit_first_times={"a": np.array([1.0, 3.0]), "b": np.array([2.5])},
    )
    phase1 = PhaseExposures(times={"a": np.array([10.0, 11.0])}, unit_first_times={"a": np.array([10.0])})
    events = ExperimentEvents(1, {}, {0: phase0, 1: phase1})
    a, b = exposure_series(events, ["a", "b"])
    assert a.time == (1.0, 2.0, 2.5, 3.0, 10.0, 11.0)
    assert a.exposures == (1, 2, 2, 3, 4, 5) and a.units == (1, 1, 1, 2, 3, 3)
    assert b.exposures == (0, 0, 1, 1, 1, 1)


def _decision(time: float, phase: int, action: str, **evidence: object) -> Decision:
    return Decision("c", time, phase, action, (f"{action} at {time:g}",), dict(evidence))


def test_consecutive_holds_of_a_phase_fold_and_keep_the_last_evidence() -> None:
    shadow = {"metric": "shadow_disagreement", "bound": "max", "threshold": 0.1, "status": "holds",
              "candidate": 0.04, "candidate_n": 250, "p_value": None}  # fmt: skip
    entries = timeline([
        _decision(1.0, 0, "hold", percent=5.0, units={"baseline": 10, "candidate": 1}),
        _decision(2.0, 0, "hold", percent=5.0, units={"baseline": 20, "candidate": 2}, guardrails=[shadow]),
        _decision(3.0, 0, "advance", percent=5.0),
        _decision(4.0, 1, "hold", percent=25.0),
        _decision(5.0, 1, "hold", percent=25.0, step="not a number"),
    ])  # fmt: skip
    assert [(e.action, e.count, e.phase) for e in entries] == [
        ("hold", 2, 0),
        ("advance", 1, 0),
        ("hold", 2, 1),
    ]
    first = entries[0]
    assert (first.first_time, first.time, first.units) == (1.0, 2.0, {"baseline": 20, "candidate": 2})
    assert first.reasons == ("hold at 2",) and entries[2].step is None
    agreement = shadow_agreement(entries)
    assert agreement is not None and agreement.compared == 250
    assert agreement.agreement_rate == pytest.approx(0.96) and math.isnan(agreement.p_value)
    assert shadow_agreement(entries[1:]) is None


def test_numbers_read_in_their_metric_units() -> None:
    assert text.metric_value("error_rate", 0.0123) == "1.23 %"
    assert text.metric_value("latency_p99", 0.25) == "250 ms"
    assert text.metric_value("feedback:x", math.nan) == text.DASH
    assert text.interval("latency", -math.inf, 0.01) == "[-∞, 10] ms"
    assert text.interval("latency", -math.inf, math.inf) == "unbounded"
    assert text.p_value(1e-9) == "< 0.0001" and text.p_value(0.0312) == "0.0312"
    assert text.p_clause(1e-9) == "p < 0.0001" and text.p_clause(0.5) == "p = 0.5"
    assert text.level_of(0.05) == "95 %" and text.level_of(0.001) == "99.9 %"
    assert text.timestamp(0.0) == "1970-01-01 00:00:00 UTC" and text.timestamp(math.nan) == text.DASH
