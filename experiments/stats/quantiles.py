"""Confidence intervals for latency quantiles (p50, p99) and their difference between arms.

The interval follows Deng, Knoblich and Yu ("Applying the Delta Method in Metric Analytics", KDD 2018,
section 4.2): the sample quantile of level q sits at rank n*q, the empirical CDF at the true quantile
has standard deviation sigma_F, so the ranks n*(q -+ z*sigma_F) bracket the quantile:
    CI = [Y(L), Y(U)],  L, U = n*(q -+ z*sigma_F),  sigma_F^2 = q(1-q)/n for independent observations.
Reading the width back as a standard error, sigma_q = (Y(U) - Y(L)) / (2z), gives a normal interval
for the difference of two arms' quantiles. When requests cluster in units, sigma_F^2 is the delta-method
variance of F(x) = sum_u #{y <= x in u} / sum_u n_u, a ratio metric over units (see `delta`).

Point estimates use the inverted empirical CDF (the smallest y with F(y) >= q, numpy's
"inverted_cdf"), so an estimate is always an observed latency. L is rounded down and U up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import (
    Alternative,
    FloatArray,
    IntArray,
    Stat,
    as_floats,
    check_alpha,
    to_stat,
)
from experiments.stats.delta import RatioSummary
from experiments.stats.normal import NormalEstimate, normal_inference


@dataclass(frozen=True, slots=True)
class QuantileInterval:
    """A quantile of one arm with its interval; `enough_data` False means the ranks fell off the sample
    (too few observations for this q), and the interval and standard error are NaN."""

    quantile: float
    estimate: Stat
    ci_low: Stat
    ci_high: Stat
    standard_error: Stat
    n: int
    enough_data: bool
    alpha: float


@dataclass(frozen=True, slots=True)
class QuantileDifference:
    """Difference treatment - control of one quantile; NaN inference when either arm lacks data."""

    control: QuantileInterval
    treatment: QuantileInterval
    difference: NormalEstimate
    enough_data: bool


def _check_level(q: float) -> None:
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must lie in (0, 1), got {q}")


def _z(alpha: float) -> float:
    from scipy import stats as sps

    check_alpha(alpha)
    return float(sps.norm.isf(alpha / 2.0))


def min_sample_size(q: float, alpha: float = 0.05) -> int:
    """Smallest n for which the independent-observation interval fits inside the sample.

    Needs n > z^2 * max(q/(1-q), (1-q)/q) (the upper rank n*q + z*sqrt(n q (1-q)) must not pass n, nor
    the lower one fall below 1): about 380 observations at p99 with alpha = 0.05.
    """
    _check_level(q)
    z = _z(alpha)
    n = math.floor(z * z * max(q / (1.0 - q), (1.0 - q) / q)) + 1
    while not _ranks_fit(n, q, math.sqrt(q * (1.0 - q) / n), z):
        n += 1
    return n


def _ranks(n: int, q: float, sigma_f: float, z: float) -> tuple[int, int]:
    """1-based ranks (L rounded down, U rounded up) of the interval's ends."""
    half = z * sigma_f * n
    return math.floor(n * q - half), math.ceil(n * q + half)


def _ranks_fit(n: int, q: float, sigma_f: float, z: float) -> bool:
    low, high = _ranks(n, q, sigma_f, z)
    return low >= 1 and high <= n


def _interval_from_sorted(
    ordered: FloatArray, q: float, sigma_f: float, z: float, alpha: float
) -> QuantileInterval:
    """DKY interval from observations sorted along the last axis (leading axes: independent runs)."""
    n = ordered.shape[-1]
    lead = ordered.shape[:-1]
    estimate = ordered[..., max(math.ceil(n * q), 1) - 1] if n > 0 else np.full(lead, np.nan)
    if n == 0 or not math.isfinite(sigma_f) or not _ranks_fit(n, q, sigma_f, z):
        missing = to_stat(np.full(lead, np.nan))
        return QuantileInterval(q, to_stat(estimate), missing, missing, missing, n, False, alpha)
    low_rank, high_rank = _ranks(n, q, sigma_f, z)
    low, high = ordered[..., low_rank - 1], ordered[..., high_rank - 1]
    return QuantileInterval(
        quantile=q,
        estimate=to_stat(estimate),
        ci_low=to_stat(low),
        ci_high=to_stat(high),
        standard_error=to_stat((high - low) / (2.0 * z)),
        n=n,
        enough_data=True,
        alpha=alpha,
    )


def _clustered_sigma_f(ordered_values: FloatArray, units: IntArray, estimate: float) -> float:
    """sd of the empirical CDF at `estimate` when observations cluster in units (delta method)."""
    n_units = int(units.max()) + 1 if units.size else 0
    if n_units < 2:
        return math.nan
    below = np.bincount(units[ordered_values <= estimate], minlength=n_units)
    sizes = np.bincount(units, minlength=n_units)
    summary = RatioSummary.from_units(below.astype(np.float64), sizes.astype(np.float64))
    return math.sqrt(float(summary.ratio_variance))


def _unit_codes(unit_ids: npt.ArrayLike, n: int) -> IntArray:
    ids = np.asarray(unit_ids)
    if ids.shape != (n,):
        raise ValueError("unit_ids must give one unit per observation")
    _, codes = np.unique(ids, return_inverse=True)
    return np.asarray(codes, dtype=np.int64).reshape(n)


def quantile_ci(
    values: npt.ArrayLike,
    q: float,
    *,
    alpha: float = 0.05,
    unit_ids: npt.ArrayLike | None = None,
) -> QuantileInterval:
    """Deng-Knoblich-Yu interval for the q-quantile: [Y(L), Y(U)] with L, U = n(q -+ z*sigma_F).

    Independent observations: sigma_F = sqrt(q(1-q)/n); `values` may then carry leading axes of
    independent runs (the last axis is the sample). With `unit_ids` (one per observation, 1-D only)
    sigma_F is the delta-method standard deviation of the empirical CDF over units.
    Reference: Deng, Knoblich, Yu, KDD 2018, section 4.2 ("quantile metrics").
    """
    _check_level(q)
    z = _z(alpha)
    data = as_floats(values)
    n = data.shape[-1] if data.ndim else 1
    if unit_ids is None:
        ordered = np.sort(np.atleast_1d(data), axis=-1)
        return _interval_from_sorted(ordered, q, math.sqrt(q * (1.0 - q) / max(n, 1)), z, alpha)
    if data.ndim != 1:
        raise ValueError("clustered quantile intervals take one 1-D sample")
    units = _unit_codes(unit_ids, n)
    order = np.argsort(data, kind="stable")
    ordered, units = data[order], units[order]
    estimate = float(ordered[max(math.ceil(n * q), 1) - 1]) if n else math.nan
    sigma_f = _clustered_sigma_f(ordered, units, estimate)
    if n == 0 or not _ranks_fit(n, q, math.sqrt(q * (1.0 - q) / n), z):
        # Too few observations for the quantile to sit inside the sample (at p99 the estimate is then
        # the maximum, F there is 1 in every unit and the clustered sd a meaningless 0).
        sigma_f = math.nan
    return _interval_from_sorted(ordered, q, sigma_f, z, alpha)


def quantile_difference_ci(
    control: npt.ArrayLike,
    treatment: npt.ArrayLike,
    q: float,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    control_unit_ids: npt.ArrayLike | None = None,
    treatment_unit_ids: npt.ArrayLike | None = None,
) -> QuantileDifference:
    """Interval for quantile_B - quantile_A: delta_q -+ z*sqrt(sigma_qA^2 + sigma_qB^2).

    Each sigma_q = (Y(U) - Y(L)) / (2z) from that arm's Deng-Knoblich-Yu interval (`quantile_ci`).
    When either arm has too few observations the result says so (`enough_data` False, NaN inference)
    instead of raising. Reference: Deng, Knoblich, Yu, KDD 2018, section 4.2.
    """
    arm_a = quantile_ci(control, q, alpha=alpha, unit_ids=control_unit_ids)
    arm_b = quantile_ci(treatment, q, alpha=alpha, unit_ids=treatment_unit_ids)
    se = np.sqrt(as_floats(arm_a.standard_error) ** 2 + as_floats(arm_b.standard_error) ** 2)
    estimate = as_floats(arm_b.estimate) - as_floats(arm_a.estimate)
    difference = normal_inference(estimate, se, alpha=alpha, alternative=alternative)
    return QuantileDifference(arm_a, arm_b, difference, arm_a.enough_data and arm_b.enough_data)
