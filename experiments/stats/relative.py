"""Relative differences on the log scale: intervals for B/A - 1 that respect that a ratio is positive.

A symmetric delta-method interval for (B - A)/A reads "+34 % to +712 %" for a small error rate: it
is the interval of a ratio forced into a shape a ratio does not have. On the log scale the estimate
ln(B/A) is close to normal, with (independent arms, delta method)
    Var ln(B/A) ~ se_B^2 / B^2 + se_A^2 / A^2,
so the interval exp(ln(B/A) -+ z sd) - 1 is asymmetric, never below -100 %, and covers at the
nominal rate where the symmetric one does not. Needs B, A > 0.
Reference: Kohavi, Tang, Xu, Trustworthy Online Controlled Experiments (2020), ch. 18; the log
transform of a ratio of means as in Fieller's and the delta method's comparison by Hirschberg and
Lye, "A geometric comparison of the delta and Fieller confidence intervals", Am. Stat. 2010.
"""

from __future__ import annotations

import math

from experiments.stats._arrays import check_alpha


def log_relative_interval(
    control: float, control_se: float, treatment: float, treatment_se: float, *, alpha: float = 0.05
) -> tuple[float, float]:
    """(low, high) for treatment/control - 1; NaN, NaN when either value is not positive."""
    from scipy import stats as sps

    check_alpha(alpha)
    if not (control > 0.0 and treatment > 0.0) or not math.isfinite(control_se + treatment_se):
        return math.nan, math.nan
    sd = math.sqrt((treatment_se / treatment) ** 2 + (control_se / control) ** 2)
    centre = math.log(treatment / control)
    z = float(sps.norm.isf(alpha / 2.0))
    return math.expm1(centre - z * sd), math.expm1(centre + z * sd)
