"""Latency per arm: the empirical CDF for the plot, and p50 / p95 / p99 with their intervals.

The CDF reads the arm's latency histogram (`experiments.sketch.LogHistogram`, within 1 % of the
exact values) from the store's sufficient statistics. Quantile intervals and their differences are
rank-based (Deng, Knoblich, Lu) at a fixed horizon (`experiments.stats.quantile_difference_ci`) over
units, from the raw requests with their unit ids, as for the `latency_pNN` metrics; they are shown
whether or not a quantile is a configured metric, and only configured metrics take part in the
decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from experiments.analysis_events import ExperimentEvents, IntArray
from experiments.report.model import LatencyCdf, LatencyQuantileRow, QuantileEstimate
from experiments.report.series import MAX_POINTS
from experiments.sketch import bucket_value
from experiments.stats import QuantileInterval, quantile_difference_ci
from experiments.store.base import ArmData, PhaseData

# The quantiles analysts ask about first: the typical request, the slow tail, and the worst 1 %.
REPORTED_QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))

_MISSING = QuantileEstimate(math.nan, math.nan, math.nan, 0)


def latency_cdf(arm: ArmData, limit: int = MAX_POINTS) -> LatencyCdf:
    """The CDF at each histogram bucket (at most `limit` of them, evenly spaced, always the last)."""
    counts = arm.latency.counts
    if not counts:
        return LatencyCdf(arm.arm, 0, (), ())
    indices = np.array(sorted(counts), dtype=np.int64)
    cumulative = np.cumsum([counts[int(i)] for i in indices]).astype(np.float64)
    total = float(cumulative[-1])
    picks = np.arange(indices.size)
    if indices.size > limit:
        picks = np.unique(np.linspace(0, indices.size - 1, limit).round().astype(np.int64))
    return LatencyCdf(
        arm=arm.arm,
        requests=int(total),
        latency_s=tuple(bucket_value(int(i)) for i in indices[picks]),
        cumulative=tuple(float(c) / total for c in cumulative[picks]),
    )


def _estimate(interval: QuantileInterval) -> QuantileEstimate:
    return QuantileEstimate(
        float(interval.estimate), float(interval.ci_low), float(interval.ci_high), int(interval.n)
    )


def quantile_rows(
    data: PhaseData,
    control: str,
    treatments: Sequence[str],
    alpha: float,
    events: ExperimentEvents | None = None,
) -> tuple[LatencyQuantileRow, ...]:
    """p50 / p95 / p99 of every treatment against the control: over units from the raw events when
    given (a unit's requests are not independent), else from the histograms over requests."""
    samples = {arm: data.arm(arm).latency.expand() for arm in (control, *treatments)}
    units: dict[str, IntArray | None] = dict.fromkeys(samples)
    if events is not None:
        for arm in samples:
            raw = events.arms.get(arm)
            samples[arm] = raw.latency if raw is not None else np.empty(0)
            units[arm] = raw.outcome_unit if raw is not None else np.empty(0, dtype=np.int64)
    rows = []
    for treatment in treatments:
        for label, level in REPORTED_QUANTILES:
            if samples[control].size == 0 or samples[treatment].size == 0:
                nan = math.nan
                rows.append(
                    LatencyQuantileRow(
                        label, level, control, treatment, _MISSING, _MISSING, nan, nan, nan, nan, False
                    )
                )
                continue
            result = quantile_difference_ci(
                samples[control],
                samples[treatment],
                level,
                alpha=alpha,
                control_unit_ids=units[control],
                treatment_unit_ids=units[treatment],
            )
            difference = result.difference
            rows.append(
                LatencyQuantileRow(
                    quantile=label,
                    level=level,
                    control=control,
                    treatment=treatment,
                    control_value=_estimate(result.control),
                    treatment_value=_estimate(result.treatment),
                    difference=float(difference.estimate),
                    ci_low=float(difference.ci_low),
                    ci_high=float(difference.ci_high),
                    p_value=float(difference.p_value),
                    enough_data=result.enough_data,
                )
            )
    return tuple(rows)
