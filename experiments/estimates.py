"""An arm's value of a metric with its standard error, from a store's sufficient statistics.

Ratio metrics (error rate, mean latency, feedback per unit, output score) are ratios of per-unit
means, with the delta-method variance over units (`experiments.stats.RatioSummary`), so requests
that cluster in units are not counted as independent. Latency quantiles use the Deng-Knoblich-Yu
interval (`experiments.stats.quantile_ci`) on the latency histogram, read as one value per request
(within the histogram's 1 % error); requests count as independent there, since the histogram keeps
no unit identity.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from experiments.stats import Looks, quantile_ci, quantile_difference_ci
from experiments.store.base import ArmData

_QUANTILE_METRIC = re.compile(r"^latency_p(\d+(?:\.\d+)?)$")


@dataclass(frozen=True, slots=True)
class Estimate:
    """A metric's value in one arm, its standard error, and the sample behind it (units or requests)."""

    value: float
    standard_error: float
    n: int


def quantile_level(metric: str) -> float | None:
    """latency_p99 -> 0.99, latency_p99.9 -> 0.999; None for metrics that are not quantiles."""
    match = _QUANTILE_METRIC.match(metric)
    return float(match.group(1)) / 100.0 if match else None


def lower_is_better(metric: str) -> bool | None:
    """The metric's good direction: latency and errors fall, feedback rises; outputs have none."""
    if metric in ("latency", "error_rate", "shadow_disagreement") or quantile_level(metric) is not None:
        return True
    if metric.startswith("feedback:"):
        return False
    return None


def estimate(arm: ArmData, metric: str, alpha: float) -> Estimate | None:
    """The arm's estimate of `metric`, or None when there is too little data for one."""
    level = quantile_level(metric)
    if level is not None:
        values = arm.latency.expand()
        if values.size == 0:
            return None
        interval = quantile_ci(values, level, alpha=alpha)
        if not interval.enough_data:
            return None
        return Estimate(float(interval.estimate), float(interval.standard_error), int(values.size))
    summary = arm.ratio(metric)
    if summary is None:
        return None
    return Estimate(float(summary.ratio), math.sqrt(float(summary.ratio_variance)), arm.units)


def difference_looks(control: Estimate, treatment: Estimate, *, ratio: float = 1.0) -> Looks:
    """One look at treatment - ratio * control, for the sequential test; the arms are independent,
    so the variance is se_T^2 + ratio^2 se_C^2."""
    se = math.sqrt(treatment.standard_error**2 + (ratio * control.standard_error) ** 2)
    return Looks(
        estimate=np.array([treatment.value - ratio * control.value]),
        standard_error=np.array([se]),
        n_total=np.array([float(control.n + treatment.n)]),
        n_min_arm=np.array([float(min(control.n, treatment.n))]),
    )


def single_look(value: float, standard_error: float, n: int) -> Looks:
    """One look at a one-arm quantity (a rate against a fixed bound)."""
    return Looks(
        estimate=np.array([value]),
        standard_error=np.array([standard_error]),
        n_total=np.array([float(n)]),
        n_min_arm=np.array([float(n)]),
    )


def quantile_comparison(
    control: ArmData, treatment: ArmData, level: float, alpha: float
) -> tuple[float, float, float, float] | None:
    """Fixed-horizon (difference, CI low, CI high, p-value) of a latency quantile; None without data."""
    result = quantile_difference_ci(control.latency.expand(), treatment.latency.expand(), level, alpha=alpha)
    if not result.enough_data:
        return None
    diff = result.difference
    return float(diff.estimate), float(diff.ci_low), float(diff.ci_high), float(diff.p_value)
