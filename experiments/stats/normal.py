"""Inference for an estimate that is approximately normal with a known standard error.

The delta method (relative lift, ratio metrics) and the quantile intervals all end the same way:
an estimate, its standard error, a z statistic against a null value, a p-value and a confidence
interval. This module is that shared ending, so each of those modules only derives its variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import (
    Alternative,
    FloatArray,
    Stat,
    as_floats,
    check_alternative,
    critical_value,
    to_stat,
)


@dataclass(frozen=True, slots=True)
class NormalEstimate:
    """An estimate of a difference with its z test and confidence interval.

    `statistic` is (estimate - null) / standard_error. One-sided alternatives give a one-sided
    interval (the open side is infinite).
    """

    estimate: Stat
    standard_error: Stat
    statistic: Stat
    p_value: Stat
    ci_low: Stat
    ci_high: Stat
    null: float
    alpha: float
    alternative: Alternative


def z_statistic(estimate: FloatArray, standard_error: FloatArray, null: float) -> FloatArray:
    """(estimate - null) / se, with 0 where both are 0 (no evidence) and +-inf where only se is 0."""
    shift = estimate - null
    with np.errstate(divide="ignore", invalid="ignore"):
        z = shift / standard_error
    return np.where((standard_error == 0.0) & (shift == 0.0), 0.0, z)


def z_p_value(z: FloatArray, alternative: Alternative) -> FloatArray:
    """Normal p-value of a z statistic: 2*Phi(-|z|) two-sided, Phi(-z) for "greater", Phi(z) for "less"."""
    from scipy import special

    check_alternative(alternative)
    if alternative == "two-sided":
        return np.asarray(2.0 * special.ndtr(-np.abs(z)), dtype=np.float64)
    if alternative == "greater":
        return np.asarray(special.ndtr(-z), dtype=np.float64)
    return np.asarray(special.ndtr(z), dtype=np.float64)


def normal_interval(
    estimate: FloatArray, standard_error: FloatArray, alpha: float, alternative: Alternative
) -> tuple[FloatArray, FloatArray]:
    """estimate -+ z*se; the side a one-sided alternative does not test is left unbounded."""
    z = critical_value(alpha, alternative)
    low = estimate - z * standard_error
    high = estimate + z * standard_error
    if alternative == "greater":
        high = np.full_like(high, np.inf)
    elif alternative == "less":
        low = np.full_like(low, -np.inf)
    return low, high


def normal_inference(
    estimate: npt.ArrayLike,
    standard_error: npt.ArrayLike,
    *,
    null: float = 0.0,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> NormalEstimate:
    """Wald inference: z = (est - null)/se, p from the normal tail, CI = est -+ z_(1-alpha/2)*se.

    Reference: any textbook Wald test; the delta-method intervals of GrowthBook's gbstats
    (`frequentist` tests) end exactly this way.
    """
    est = as_floats(estimate)
    se = as_floats(standard_error)
    if np.any(se < 0.0):
        raise ValueError("standard errors must be non-negative")
    z = z_statistic(est, se, null)
    low, high = normal_interval(est, se, alpha, alternative)
    return NormalEstimate(
        estimate=to_stat(est),
        standard_error=to_stat(se),
        statistic=to_stat(z),
        p_value=to_stat(z_p_value(z, alternative)),
        ci_low=to_stat(low),
        ci_high=to_stat(high),
        null=null,
        alpha=alpha,
        alternative=alternative,
    )
