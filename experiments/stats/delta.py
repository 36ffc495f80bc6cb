"""Delta-method variances: relative lift, and ratio metrics when requests cluster in units.

Units (users, sessions) are assigned to arms, but many metrics are per request: error rate = errors /
requests, mean latency = total latency / requests. Requests of one unit are correlated, so treating
them as independent trials understates the variance. Summing per unit (M_u = errors of unit u,
D_u = requests of unit u) makes units the independent observations, and the metric becomes a ratio of
two means, mean(M)/mean(D), whose variance the delta method gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import Alternative, FloatArray, Stat, as_floats, check_alpha, to_stat
from experiments.stats.normal import NormalEstimate, normal_inference


def relative_lift(
    n_a: npt.ArrayLike,
    mean_a: npt.ArrayLike,
    var_a: npt.ArrayLike,
    n_b: npt.ArrayLike,
    mean_b: npt.ArrayLike,
    var_b: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> NormalEstimate:
    """Relative lift (mean_B - mean_A)/mean_A with its delta-method interval.

    Var ~= s_A^2 * mean_B^2 / (mean_A^4 * n_A) + s_B^2 / (mean_A^2 * n_B)
    (first-order Taylor expansion of mean_B/mean_A around the true means; the arms are independent).
    Reference: GrowthBook, docs/statistics/details.mdx ("relative effects"), and Deng, Knoblich, Lu,
    "Applying the Delta Method in Metric Analytics", KDD 2018.
    """
    check_alpha(alpha)
    na, nb = as_floats(n_a), as_floats(n_b)
    ma, mb = as_floats(mean_a), as_floats(mean_b)
    va, vb = as_floats(var_a), as_floats(var_b)
    if np.any(ma == 0.0):
        raise ValueError("relative lift is undefined when the control mean is 0")
    variance = va * mb**2 / (ma**4 * na) + vb / (ma**2 * nb)
    return normal_inference((mb - ma) / ma, np.sqrt(variance), alpha=alpha, alternative=alternative)


def ratio_metric_variance(
    n: npt.ArrayLike,
    mean_numerator: npt.ArrayLike,
    mean_denominator: npt.ArrayLike,
    var_numerator: npt.ArrayLike,
    var_denominator: npt.ArrayLike,
    covariance: npt.ArrayLike,
) -> Stat:
    """Variance of R = mean(M)/mean(D) over n independent units, by the delta method.

    Var(R) ~= (1/n) [ s_M^2/mu_D^2 - 2 mu_M s_MD / mu_D^3 + mu_M^2 s_D^2 / mu_D^4 ].
    Reference: GrowthBook packages/stats/gbstats/utils.py `variance_of_ratios`; Deng, Knoblich, Lu,
    KDD 2018, section 3.
    """
    nn = as_floats(n)
    mm, md = as_floats(mean_numerator), as_floats(mean_denominator)
    vm, vd, cov = as_floats(var_numerator), as_floats(var_denominator), as_floats(covariance)
    if np.any(md == 0.0):
        raise ValueError("a ratio metric needs a non-zero mean denominator")
    per_unit = vm / md**2 - 2.0 * mm * cov / md**3 + mm**2 * vd / md**4
    return to_stat(np.maximum(per_unit, 0.0) / nn)


@dataclass(frozen=True, slots=True)
class RatioSummary:
    """Sufficient statistics of a ratio metric over units: n, means, variances and covariance (ddof=1)."""

    n: Stat
    mean_numerator: Stat
    mean_denominator: Stat
    var_numerator: Stat
    var_denominator: Stat
    covariance: Stat

    @classmethod
    def from_units(cls, numerators: npt.ArrayLike, denominators: npt.ArrayLike) -> RatioSummary:
        """Summarise per-unit totals; the last axis runs over units (leading axes: many runs)."""
        m, d = np.broadcast_arrays(as_floats(numerators), as_floats(denominators))
        n = m.shape[-1]
        if n < 2:
            raise ValueError("a ratio metric needs at least 2 units")
        mean_m, mean_d = m.mean(axis=-1), d.mean(axis=-1)
        centred_m = m - mean_m[..., np.newaxis]
        centred_d = d - mean_d[..., np.newaxis]
        return cls(
            n=to_stat(np.full_like(mean_m, n)),
            mean_numerator=to_stat(mean_m),
            mean_denominator=to_stat(mean_d),
            var_numerator=to_stat((centred_m**2).sum(axis=-1) / (n - 1)),
            var_denominator=to_stat((centred_d**2).sum(axis=-1) / (n - 1)),
            covariance=to_stat((centred_m * centred_d).sum(axis=-1) / (n - 1)),
        )

    @classmethod
    def from_sums(
        cls,
        n: npt.ArrayLike,
        sum_numerator: npt.ArrayLike,
        sum_denominator: npt.ArrayLike,
        sum_numerator_squares: npt.ArrayLike,
        sum_denominator_squares: npt.ArrayLike,
        sum_cross_products: npt.ArrayLike,
    ) -> RatioSummary:
        """From running sums over units (what a SQL GROUP BY arm keeps): n, SM, SD, SM^2, SD^2, SMD."""
        nn = as_floats(n)
        if np.any(nn < 2):
            raise ValueError("a ratio metric needs at least 2 units")
        sm, sd = as_floats(sum_numerator), as_floats(sum_denominator)
        mean_m, mean_d = sm / nn, sd / nn

        def centred(total: FloatArray, first: FloatArray, second: FloatArray) -> FloatArray:
            # (sum of products - n*mean*mean)/(n-1): the ddof=1 (co)variance from running sums.
            return np.asarray((total - nn * first * second) / (nn - 1.0), dtype=np.float64)

        # Rounding can push a variance of (nearly) constant values a hair below 0; it is 0.
        var_m = np.maximum(centred(as_floats(sum_numerator_squares), mean_m, mean_m), 0.0)
        var_d = np.maximum(centred(as_floats(sum_denominator_squares), mean_d, mean_d), 0.0)
        return cls(
            n=to_stat(nn),
            mean_numerator=to_stat(mean_m),
            mean_denominator=to_stat(mean_d),
            var_numerator=to_stat(var_m),
            var_denominator=to_stat(var_d),
            covariance=to_stat(centred(as_floats(sum_cross_products), mean_m, mean_d)),
        )

    @property
    def ratio(self) -> Stat:
        """mean(M)/mean(D): e.g. errors per request over all requests of the arm."""
        return to_stat(as_floats(self.mean_numerator) / as_floats(self.mean_denominator))

    @property
    def ratio_variance(self) -> Stat:
        """Delta-method variance of `ratio` (see `ratio_metric_variance`)."""
        return ratio_metric_variance(
            self.n,
            self.mean_numerator,
            self.mean_denominator,
            self.var_numerator,
            self.var_denominator,
            self.covariance,
        )


def ratio_difference(
    control: RatioSummary,
    treatment: RatioSummary,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> NormalEstimate:
    """Difference of ratio metrics between arms, absolute (R_B - R_A) or relative ((R_B - R_A)/R_A).

    Absolute: Var = Var(R_A) + Var(R_B) (independent arms).
    Relative: Var ~= Var(R_B)/R_A^2 + R_B^2 Var(R_A)/R_A^4 (delta method once more).
    Reference: Deng, Knoblich, Lu, KDD 2018; GrowthBook gbstats `frequentist` tests on ratio metrics.
    """
    check_alpha(alpha)
    ra, rb = as_floats(control.ratio), as_floats(treatment.ratio)
    va, vb = as_floats(control.ratio_variance), as_floats(treatment.ratio_variance)
    if not relative:
        return normal_inference(rb - ra, np.sqrt(va + vb), alpha=alpha, alternative=alternative)
    if np.any(ra == 0.0):
        raise ValueError("a relative difference is undefined when the control ratio is 0")
    variance = vb / ra**2 + rb**2 * va / ra**4
    return normal_inference((rb - ra) / ra, np.sqrt(variance), alpha=alpha, alternative=alternative)
