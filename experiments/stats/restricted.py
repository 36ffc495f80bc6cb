"""The standard error of a difference of error rates at a null that ties them: a score test's variance.

A guardrail asks whether the candidate's error rate p_C exceeds r * p_B + d (d: an allowed increase,
r: an allowed ratio; r = 0 tests p_C against a fixed bound d). A Wald test uses each arm's observed
rate for its variance; a candidate well past the limit then carries the larger variance of its own
high rate, and a baseline that happens to show no errors carries none. A score test takes the
variance the rates would have at the null instead (Miettinen & Nurminen, Statistics in Medicine
1985; Farrington & Manning, Statistics in Medicine 1990, for a non-inferiority margin): with the
rates restricted to p_C = r p_B + d and estimated from both arms together,

    p~_B = (x_B + x_C - n_C d) / (n_B + r n_C)      (clipped to [0, 1]),   p~_C = r p~_B + d,
    se^2 = deff_C p~_C (1 - p~_C) / n_C + r^2 deff_B p~_B (1 - p~_B) / n_B.

p~_B is the moment estimate that matches the total errors seen, close to the restricted maximum
likelihood of Farrington and Manning without solving their cubic. `deff` is each arm's design effect
(the delta method's variance over units against the binomial one), so requests that cluster in units
keep their wider spread.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import FloatArray, as_floats


def restricted_rate_standard_error(
    errors_b: npt.ArrayLike,
    requests_b: npt.ArrayLike,
    errors_c: npt.ArrayLike,
    requests_c: npt.ArrayLike,
    *,
    ratio: float,
    increase: float,
    deff_b: npt.ArrayLike = 1.0,
    deff_c: npt.ArrayLike = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """(se of p_C - ratio p_B at the null p_C = ratio p_B + increase, the null's p~_C), elementwise.

    NaN where an arm has no requests (a baseline is not needed when `ratio` is 0)."""
    x_b, n_b, x_c, n_c = (
        as_floats(errors_b),
        as_floats(requests_b),
        as_floats(errors_c),
        as_floats(requests_c),
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        if ratio == 0.0:
            p_b = np.zeros_like(x_c)
            baseline_term = np.zeros_like(x_c)
        else:
            p_b = np.clip((x_b + x_c - n_c * increase) / (n_b + ratio * n_c), 0.0, 1.0)
            baseline_term = ratio**2 * as_floats(deff_b) * p_b * (1.0 - p_b) / n_b
        p_c = np.clip(ratio * p_b + increase, 0.0, 1.0)
        variance = as_floats(deff_c) * p_c * (1.0 - p_c) / n_c + baseline_term
        se = np.where((n_c > 0.0) & np.isfinite(variance), np.sqrt(variance), np.nan)
    return np.asarray(se, dtype=np.float64), np.asarray(p_c, dtype=np.float64)
