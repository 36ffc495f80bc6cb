"""CUPED: variance reduction with a pre-period covariate per unit.

A unit's metric before the experiment predicts its metric during it (heavy users stay heavy). With
Y the in-experiment value per unit and X its pre-period value, the adjusted outcome
    Y' = Y - theta (X - mean X),   theta = Cov(Y, X) / Var(X)   (pooled over both arms)
has the same expected difference between arms (X is measured before assignment, so its mean is the
same in both) and variance Var(Y)(1 - rho^2). The difference of the arms' means of Y' is tested as a
Welch difference; `variance_reduction` = 1 - Var(adjusted difference) / Var(unadjusted difference),
about rho^2. Units without a pre-period value get X = the mean of those with one, which leaves them
unadjusted.
Reference: Deng, Xu, Kohavi, Walker, "Improving the Sensitivity of Online Controlled Experiments by
Utilizing Pre-Experiment Data", WSDM 2013, sections 3.2-3.3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import as_floats, check_alpha

# Fewer units than this with a pre-period value in an arm and the covariance is too noisy to use.
MIN_COVARIATE_UNITS = 10


@dataclass(frozen=True, slots=True)
class CupedResult:
    difference: float
    standard_error: float
    ci_low: float
    ci_high: float
    p_value: float
    theta: float
    variance_reduction: float


def _filled(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    known = np.isfinite(x)
    return np.asarray(np.where(known, x, x[known].mean() if known.any() else 0.0), dtype=np.float64)


def cuped_difference(
    control: npt.ArrayLike,
    control_pre: npt.ArrayLike,
    treatment: npt.ArrayLike,
    treatment_pre: npt.ArrayLike,
    *,
    alpha: float = 0.05,
) -> CupedResult | None:
    """Adjusted treatment - control of per-unit values; `*_pre` are the covariates (NaN: none).

    None when an arm has fewer than MIN_COVARIATE_UNITS units with a covariate, or X does not vary.
    """
    from scipy import stats as sps

    check_alpha(alpha)
    y_c, y_t = as_floats(control).ravel(), as_floats(treatment).ravel()
    x_c, x_t = as_floats(control_pre).ravel(), as_floats(treatment_pre).ravel()
    if min(np.isfinite(x_c).sum(), np.isfinite(x_t).sum()) < MIN_COVARIATE_UNITS:
        return None
    x = _filled(np.concatenate([x_c, x_t]))
    y = np.concatenate([y_c, y_t])
    var_x = float(x.var(ddof=1))
    if not var_x > 0.0:
        return None
    theta = float(np.cov(y, x, ddof=1)[0, 1]) / var_x
    adjusted = y - theta * (x - x.mean())
    a_c, a_t = adjusted[: y_c.size], adjusted[y_c.size :]
    var_adjusted = float(a_c.var(ddof=1) / a_c.size + a_t.var(ddof=1) / a_t.size)
    var_plain = float(y_c.var(ddof=1) / y_c.size + y_t.var(ddof=1) / y_t.size)
    se = math.sqrt(var_adjusted)
    difference = float(a_t.mean() - a_c.mean())
    z = float(sps.norm.isf(alpha / 2.0))
    p_value = float(2.0 * sps.norm.sf(abs(difference) / se)) if se > 0.0 else math.nan
    reduction = 1.0 - var_adjusted / var_plain if var_plain > 0.0 else math.nan
    return CupedResult(difference, se, difference - z * se, difference + z * se, p_value, theta, reduction)
