"""Novelty: a treatment that is better only on the units' first day shows it in the day rows."""

from __future__ import annotations

import numpy as np

from experiments.analysis_events import ArmEvents, ExperimentEvents, FeedbackEvents
from experiments.report.novelty import DAY_S, novelty_rows, spans_days

UNITS = 1500
DAYS = 5


def _arm(rng: np.random.Generator, first_day_rate: float, later_rate: float) -> ArmEvents:
    """Every unit visits once a day for DAYS days from its own start and converts with the day's rate."""
    start = rng.uniform(0.0, DAY_S, UNITS)
    units = np.repeat(np.arange(UNITS, dtype=np.int64), DAYS)
    day = np.tile(np.arange(DAYS), UNITS)
    times = start[units] + day * DAY_S + 60.0
    rate = np.where(day == 0, first_day_rate, later_rate)
    converted = rng.random(units.size) < rate
    empty = np.empty(0)
    return ArmEvents(
        exposure_time=times, exposure_unit=units, outcome_time=empty,
        outcome_unit=np.empty(0, dtype=np.int64), latency=empty, error=empty,
        feedback={"feedback:conversion": FeedbackEvents(times[converted] + 1.0, units[converted],
                                                        np.ones(int(converted.sum())))},
    )  # fmt: skip


def test_a_first_day_effect_shows_on_day_zero_and_fades() -> None:
    rng = np.random.default_rng(3)
    events = ExperimentEvents(0, {"control": _arm(rng, 0.10, 0.10), "treatment": _arm(rng, 0.20, 0.10)}, {})
    rows = novelty_rows(events, "control", ["treatment"], ["feedback:conversion"], 0.05)
    assert [row.day for row in rows] == ["0", "1", "2", "3", "4"] and spans_days(rows)
    first, *later = rows
    assert first.ci_low > 0.05 and first.control_units == first.treatment_units == UNITS
    assert all(row.ci_low < 0.0 < row.ci_high for row in later[:1]) and first.p_value < 1e-6
    assert abs(np.mean([row.difference for row in later])) < 0.02


def test_one_day_of_data_has_no_novelty_section() -> None:
    rng = np.random.default_rng(4)
    arm = _arm(rng, 0.1, 0.1)
    one_day = ArmEvents(
        arm.exposure_time[::DAYS], arm.exposure_unit[::DAYS], arm.outcome_time, arm.outcome_unit,
        arm.latency, arm.error, {},
    )  # fmt: skip
    events = ExperimentEvents(0, {"control": one_day, "treatment": one_day}, {})
    assert not spans_days(novelty_rows(events, "control", ["treatment"], ["feedback:conversion"], 0.05))
