"""Fixed-horizon tests: the analysis happens once, at a sample size chosen in advance.

Watching these p-values as data arrive and stopping at the first "significant" one inflates the
false-positive rate several times over; dashboards that refresh use `sequential` instead.
Arms are A (control) and B (treatment); every estimate is B - A.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import (
    Alternative,
    BoolStat,
    FloatArray,
    Stat,
    as_floats,
    check_alpha,
    check_alternative,
    critical_value,
    to_bool_stat,
    to_stat,
)
from experiments.stats.normal import z_p_value, z_statistic

# Fisher's exact test replaces the z test when an expected cell falls below this count: the usual
# rule (Cochran 1954) for when the normal approximation to a 2x2 table stops being trustworthy.
MIN_EXPECTED_CELL = 5.0


@dataclass(frozen=True, slots=True)
class MeanDifference:
    """Welch's t test of mean_b - mean_a, with its confidence interval."""

    estimate: Stat
    standard_error: Stat
    statistic: Stat
    degrees_of_freedom: Stat
    p_value: Stat
    ci_low: Stat
    ci_high: Stat
    alpha: float
    alternative: Alternative


@dataclass(frozen=True, slots=True)
class ProportionDifference:
    """Test of rate_b - rate_a; `exact` says Fisher's exact test produced the p-value."""

    estimate: Stat
    rate_a: Stat
    rate_b: Stat
    statistic: Stat
    p_value: Stat
    ci_low: Stat
    ci_high: Stat
    exact: BoolStat
    alpha: float
    alternative: Alternative


def _t_p_value(t: FloatArray, df: FloatArray, alternative: Alternative) -> FloatArray:
    from scipy import stats as sps

    if alternative == "two-sided":
        return np.asarray(2.0 * sps.t.sf(np.abs(t), df), dtype=np.float64)
    if alternative == "greater":
        return np.asarray(sps.t.sf(t, df), dtype=np.float64)
    return np.asarray(sps.t.cdf(t, df), dtype=np.float64)


def welch_t(
    n_a: npt.ArrayLike,
    mean_a: npt.ArrayLike,
    var_a: npt.ArrayLike,
    n_b: npt.ArrayLike,
    mean_b: npt.ArrayLike,
    var_b: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> MeanDifference:
    """Welch's unequal-variance t test from sufficient statistics (sample variances, ddof=1).

    se^2 = s_A^2/n_A + s_B^2/n_B
    nu   = se^4 / [(s_A^2/n_A)^2/(n_A-1) + (s_B^2/n_B)^2/(n_B-1)]   (Welch-Satterthwaite)
    t    = (mean_B - mean_A)/se,  p = 2*t.sf(|t|, nu),  CI = delta -+ t_(1-alpha/2, nu)*se.

    Reference: Welch (1947), Biometrika 34; equals `scipy.stats.ttest_ind_from_stats(...,
    equal_var=False)`. Vectorised over broadcast inputs.
    """
    from scipy import stats as sps

    check_alpha(alpha)
    check_alternative(alternative)
    na, nb = as_floats(n_a), as_floats(n_b)
    va, vb = as_floats(var_a), as_floats(var_b)
    if np.any(na < 2) or np.any(nb < 2):
        raise ValueError("Welch's test needs at least 2 observations per arm")
    if np.any(va < 0.0) or np.any(vb < 0.0):
        raise ValueError("variances must be non-negative")
    part_a, part_b = va / na, vb / nb
    se2 = part_a + part_b
    se = np.sqrt(se2)
    estimate = as_floats(mean_b) - as_floats(mean_a)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = se2**2 / (part_a**2 / (na - 1.0) + part_b**2 / (nb - 1.0))
    # Both variances zero: no spread to estimate df from; the smallest df is the cautious choice.
    df = np.where(se2 == 0.0, np.minimum(na, nb) - 1.0, df)
    t = z_statistic(estimate, se, 0.0)
    tail = alpha / 2.0 if alternative == "two-sided" else alpha
    half_width = sps.t.isf(tail, df) * se
    low, high = estimate - half_width, estimate + half_width
    if alternative == "greater":
        high = np.full_like(high, np.inf)
    elif alternative == "less":
        low = np.full_like(low, -np.inf)
    return MeanDifference(
        estimate=to_stat(estimate),
        standard_error=to_stat(se),
        statistic=to_stat(t),
        degrees_of_freedom=to_stat(df),
        p_value=to_stat(_t_p_value(t, df, alternative)),
        ci_low=to_stat(low),
        ci_high=to_stat(high),
        alpha=alpha,
        alternative=alternative,
    )


def wilson_interval(successes: FloatArray, n: FloatArray, z: float) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for one proportion: (x + z^2/2 -+ z*sqrt(x(n-x)/n + z^2/4)) / (n + z^2).

    Reference: Wilson (1927), JASA 22; it keeps its coverage near 0 and 1 where Wald's collapses.
    """
    centre = (successes + z * z / 2.0) / (n + z * z)
    half = z / (n + z * z) * np.sqrt(successes * (n - successes) / n + z * z / 4.0)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def proportion_difference_ci(
    successes_a: npt.ArrayLike,
    n_a: npt.ArrayLike,
    successes_b: npt.ArrayLike,
    n_b: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> tuple[Stat, Stat]:
    """Newcombe's hybrid score interval for p_B - p_A (his method 10).

    With Wilson limits (l_A, u_A), (l_B, u_B) and d = p_B - p_A:
    low = d - sqrt((p_B - l_B)^2 + (u_A - p_A)^2), high = d + sqrt((u_B - p_B)^2 + (p_A - l_A)^2).
    Reference: Newcombe (1998), Statistics in Medicine 17, 873-890. Accurate for small counts too,
    which is why it is used alongside Fisher's test.
    """
    xa, na, xb, nb = as_floats(successes_a), as_floats(n_a), as_floats(successes_b), as_floats(n_b)
    _check_counts(xa, na, xb, nb)
    z = critical_value(alpha, alternative)
    pa, pb = xa / na, xb / nb
    low_a, high_a = wilson_interval(xa, na, z)
    low_b, high_b = wilson_interval(xb, nb, z)
    diff = pb - pa
    low = diff - np.sqrt((pb - low_b) ** 2 + (high_a - pa) ** 2)
    high = diff + np.sqrt((high_b - pb) ** 2 + (pa - low_a) ** 2)
    if alternative == "greater":
        high = np.full_like(high, np.inf)
    elif alternative == "less":
        low = np.full_like(low, -np.inf)
    return to_stat(low), to_stat(high)


def _check_counts(xa: FloatArray, na: FloatArray, xb: FloatArray, nb: FloatArray) -> None:
    if np.any(na < 1) or np.any(nb < 1):
        raise ValueError("each arm needs at least one trial")
    if np.any((xa < 0) | (xa > na) | (xb < 0) | (xb > nb)):
        raise ValueError("successes must lie between 0 and the number of trials")


def _fisher_p_value(xa: float, na: float, xb: float, nb: float, alternative: Alternative) -> float:
    # Rows are B then A, so an odds ratio above 1 (alternative "greater") means rate_b > rate_a.
    from scipy import stats as sps

    table = np.array([[xb, nb - xb], [xa, na - xa]], dtype=np.int64)
    return float(sps.fisher_exact(table, alternative=alternative).pvalue)


def two_proportion_test(
    successes_a: npt.ArrayLike,
    n_a: npt.ArrayLike,
    successes_b: npt.ArrayLike,
    n_b: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> ProportionDifference:
    """Pooled two-proportion z test, switching to Fisher's exact test when an expected cell < 5.

    p = (x_A + x_B)/(n_A + n_B),  z = (p_B - p_A) / sqrt(p(1-p)(1/n_A + 1/n_B)).
    Expected cells are n_i*p and n_i*(1-p); if any is below 5 the p-value comes from Fisher's exact
    test (conditional on the margins) and `exact` is True. The interval is Newcombe's hybrid score
    interval in both cases. `statistic` is always the pooled z, for the record.
    Reference: Agresti, Categorical Data Analysis (3rd ed.), sections 3.1 and 3.5.
    Vectorised; Fisher's test runs element by element only where it is needed.
    """
    check_alpha(alpha)
    check_alternative(alternative)
    xa, na, xb, nb = np.broadcast_arrays(
        as_floats(successes_a), as_floats(n_a), as_floats(successes_b), as_floats(n_b)
    )
    _check_counts(xa, na, xb, nb)
    pa, pb = xa / na, xb / nb
    pooled = (xa + xb) / (na + nb)
    se0 = np.sqrt(pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb))
    z = z_statistic(pb - pa, se0, 0.0)
    p_value = np.array(z_p_value(z, alternative), dtype=np.float64)
    min_expected = np.minimum(np.minimum(na, nb) * pooled, np.minimum(na, nb) * (1.0 - pooled))
    exact = min_expected < MIN_EXPECTED_CELL
    for index in np.argwhere(exact.reshape(-1)).ravel():
        cell = np.unravel_index(index, exact.shape)
        p_value[cell] = _fisher_p_value(xa[cell], na[cell], xb[cell], nb[cell], alternative)
    low, high = proportion_difference_ci(xa, na, xb, nb, alpha=alpha, alternative=alternative)
    return ProportionDifference(
        estimate=to_stat(pb - pa),
        rate_a=to_stat(pa),
        rate_b=to_stat(pb),
        statistic=to_stat(z),
        p_value=to_stat(p_value),
        ci_low=low,
        ci_high=high,
        exact=to_bool_stat(exact),
        alpha=alpha,
        alternative=alternative,
    )
