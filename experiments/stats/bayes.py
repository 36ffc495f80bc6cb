"""Bayesian summaries of a difference: chance to beat control, expected loss, credible interval.

With a flat prior on Delta = B - A and the normal approximation the frequentist tests also use,
the posterior is Delta ~ N(Delta_hat, se^2). For a metric where higher is better (flip the sign of
Delta_hat otherwise):
    chance to beat control = P(Delta > 0)            = Phi(Delta_hat / se)
    expected loss of shipping B = E[max(0, -Delta)]  = se phi(d) - Delta_hat Phi(-d),  d = Delta_hat/se
    credible interval                                = Delta_hat -+ z_(1-alpha/2) se
Expected loss is what an analyst risks by shipping: ship when it is below a threshold of caring.
Reference: GrowthBook, docs/statistics/bayesian.mdx (chance to win, risk); Stucchio, "Bayesian A/B
Testing at VWO" (2015), section 4 (expected loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from experiments.stats._arrays import check_alpha


@dataclass(frozen=True, slots=True)
class BayesSummary:
    chance_to_beat_control: float
    expected_loss: float
    """In the metric's units: the expected shortfall of B against A when B is shipped."""
    credible_low: float
    credible_high: float


def bayes_summary(
    difference: float, standard_error: float, *, higher_is_better: bool = True, alpha: float = 0.05
) -> BayesSummary | None:
    """The posterior summaries of B - A; None without a positive, finite standard error."""
    from scipy import stats as sps

    check_alpha(alpha)
    if not (math.isfinite(difference) and math.isfinite(standard_error) and standard_error > 0.0):
        return None
    gain = difference if higher_is_better else -difference
    d = gain / standard_error
    chance = float(sps.norm.cdf(d))
    loss = standard_error * float(sps.norm.pdf(d)) - gain * float(sps.norm.cdf(-d))
    z = float(sps.norm.isf(alpha / 2.0))
    return BayesSummary(
        chance, max(loss, 0.0), difference - z * standard_error, difference + z * standard_error
    )
