"""Winsorisation of a heavy-tailed metric: the A/A rate holds and a real shift is found more often."""

from __future__ import annotations

import math

import numpy as np

from experiments.analysis_events import ArmEvents, FeedbackEvents
from experiments.analysis_winsor import winsorized_comparison, winsorized_pair

RUNS = 600
UNITS = 1000
METRIC = "feedback:revenue"
ALPHA = 0.05


def _arm(rng: np.random.Generator, shift: float) -> ArmEvents:
    """Revenue per unit with a Pareto tail (shape 1.5: infinite variance), one event per unit."""
    value = rng.pareto(1.5, UNITS) + shift
    units = np.arange(UNITS, dtype=np.int64)
    empty = np.empty(0)
    return ArmEvents(
        exposure_time=np.zeros(UNITS), exposure_unit=units, outcome_time=empty,
        outcome_unit=np.empty(0, dtype=np.int64), latency=empty, error=empty,
        feedback={METRIC: FeedbackEvents(np.ones(UNITS), units, value)},
    )  # fmt: skip


def _rejects(rng: np.random.Generator, shift: float, percentile: float | None) -> float:
    hits = 0
    for _ in range(RUNS):
        control, treatment = _arm(rng, 0.0), _arm(rng, shift)
        if percentile is not None:
            (control, treatment), _ = winsorized_pair(control, treatment, METRIC, percentile)
        found = winsorized_comparison(control, treatment, METRIC, ALPHA)
        assert found is not None
        hits += found[2][3] < ALPHA
    return hits / RUNS


def test_capping_at_the_99th_percentile_keeps_the_aa_rate_and_gains_power() -> None:
    rng = np.random.default_rng(23)
    assert _rejects(rng, 0.0, 99.0) <= ALPHA + 3.0 * math.sqrt(ALPHA * (1.0 - ALPHA) / RUNS)
    capped, plain = _rejects(rng, 0.15, 99.0), _rejects(rng, 0.15, None)
    assert capped > plain + 0.1


def test_the_cap_is_the_percentile_of_both_arms_together() -> None:
    rng = np.random.default_rng(24)
    control, treatment = _arm(rng, 0.0), _arm(rng, 0.0)
    (low, high), cap = winsorized_pair(control, treatment, METRIC, 90.0)
    pooled = np.concatenate([control.feedback[METRIC].value, treatment.feedback[METRIC].value])
    assert cap == np.percentile(pooled, 90.0)
    assert low.feedback[METRIC].value.max() == cap == high.feedback[METRIC].value.max()
