"""Segment breakdowns by simulation (issue 17): Holm across segments keeps the family-wise false
positive rate of an A/A test under alpha, a real effect in one segment is found, and Cochran's Q
keeps its level.

Each run is an experiment with K segments of one dimension and a per-unit goal (a conversion, 0/1);
`segment_breakdown` compares every segment over its units and adjusts them together.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.analysis_events import ArmEvents, FeedbackEvents
from experiments.analysis_segments import segment_breakdown

ALPHA = 0.05
RUNS = 2000
SEGMENTS = 5
UNITS = 200  # per arm and segment: above the small-segment rule
METRIC = "feedback:conversion"
SLACK = 3.0 * math.sqrt(ALPHA * (1.0 - ALPHA) / RUNS)


def _arm(rng: np.random.Generator, rates: list[float]) -> ArmEvents:
    """UNITS units per segment, each converting (value 1) with its segment's rate."""
    size = UNITS * len(rates)
    labels = tuple(f"s{segment}" for segment in range(len(rates)) for _ in range(UNITS))
    converted = rng.random(size) < np.repeat(rates, UNITS)
    units = np.flatnonzero(converted).astype(np.int64)
    empty = np.empty(0)
    return ArmEvents(
        exposure_time=np.zeros(size),
        exposure_unit=np.arange(size, dtype=np.int64),
        outcome_time=empty,
        outcome_unit=np.empty(0, dtype=np.int64),
        latency=empty,
        error=empty,
        feedback={METRIC: FeedbackEvents(np.ones(units.size), units, np.ones(units.size))},
        unit_segments={"region": labels},
    )


def _runs(
    rng: np.random.Generator, treatment_rates: list[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run: any segment significant after Holm, any before, and Cochran's Q below alpha;
    plus which segments were significant."""
    control_rates = [0.2] * SEGMENTS
    adjusted, raw, heterogeneous = (np.zeros(RUNS, dtype=bool) for _ in range(3))
    found = np.zeros((RUNS, SEGMENTS), dtype=bool)
    for run in range(RUNS):
        effects, spread = segment_breakdown(
            _arm(rng, control_rates), _arm(rng, treatment_rates), METRIC, ["region"], ALPHA
        )
        found[run] = [cell.significant for cell in effects]
        adjusted[run] = found[run].any()
        raw[run] = any(cell.p_value <= ALPHA for cell in effects)
        heterogeneous[run] = spread[0].p_value <= ALPHA
    return adjusted, raw, np.column_stack([heterogeneous, found])


def test_an_aa_test_across_segments_keeps_the_family_wise_rate_under_alpha() -> None:
    adjusted, raw, extra = _runs(np.random.default_rng(170), [0.2] * SEGMENTS)
    assert adjusted.mean() <= ALPHA + SLACK
    assert raw.mean() >= 0.15  # unadjusted, five segments find "something" in about 1 - 0.95^5
    assert extra[:, 0].mean() <= ALPHA + SLACK  # Cochran's Q keeps its level too


def test_a_real_effect_in_one_segment_is_found_there() -> None:
    _, _, extra = _runs(np.random.default_rng(171), [0.2, 0.2, 0.35, 0.2, 0.2])
    found = extra[:, 1:]
    assert found[:, 2].mean() >= 0.7  # +15 points at 200 units per arm: found in most runs (0.80)
    assert found[:, [0, 1, 3, 4]].any(axis=1).mean() <= ALPHA + SLACK  # and not elsewhere
    assert extra[:, 0].mean() >= 0.6  # Cochran's Q sees that the effect differs
