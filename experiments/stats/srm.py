"""Sample ratio mismatch (SRM), at one look and checked continuously, and the canary count test.

If a 50/50 experiment shows 5,210 vs 4,790 units, something upstream (a redirect, a crash, a bot
filter, a sticky-cookie bug) is dropping or duplicating units in one arm, and every metric comparison
is biased. The chi-square test answers once; a gateway checks continuously, and a chi-square checked
100 times flags a healthy split 10-16 times more often than its nominal level. The sequential
Dirichlet-multinomial test stays valid under continuous checking: its Bayes factor is a martingale
under the expected split, so P(BF ever >= 1/alpha) <= alpha.

    log BF_n = ln B(alpha_0 + x) - ln B(alpha_0) - sum_i x_i ln theta_i,   alpha_0 = c * theta
with B the multivariate Beta function (sum ln Gamma(a_i) - ln Gamma(sum a_i)), x the counts so far,
theta the expected shares and c the prior concentration.
References: Lindon & Malek, "Anytime-Valid Inference for Multinomial Count Data", NeurIPS 2022
(arXiv 2011.03567); Lindon, Sanden, Shirikian, "Rapid Regression Detection in Software Deployments
through Sequential Testing", KDD 2022 (arXiv 2205.14762) for the count test on errors per arm;
Fabijan et al., "Diagnosing Sample Ratio Mismatch in Online Controlled Experiments", KDD 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import (
    BoolArray,
    BoolStat,
    FloatArray,
    IntArray,
    Stat,
    as_floats,
    check_alpha,
    to_bool_stat,
    to_stat,
)

# SRM is flagged at p < 0.001: a healthy split then raises a false alarm once per thousand checks,
# and real mismatches are usually so large that the strict level costs almost no detection power.
DEFAULT_SRM_ALPHA = 0.001

# Prior concentration c in alpha_0 = c * theta: the prior behaves like 100 pseudo-units drawn at the
# expected split. The first few dozen units cannot flag on their own, yet a persistent imbalance of a
# few percent outweighs the prior within a few thousand units. Larger c is slower to flag gross early
# imbalances and faster on subtle persistent ones.
DEFAULT_PRIOR_CONCENTRATION = 100.0


def _shares(weights: npt.ArrayLike, k: int) -> FloatArray:
    w = as_floats(weights).ravel()
    if w.size != k or k < 2:
        raise ValueError(f"need one weight per arm (at least 2 arms), got {w.size} weights for {k} arms")
    if np.any(w <= 0.0):
        raise ValueError("weights must be positive")
    return np.asarray(w / w.sum(), dtype=np.float64)


def _counts(counts: npt.ArrayLike) -> FloatArray:
    x = as_floats(counts)
    if x.ndim == 0 or np.any(x < 0.0):
        raise ValueError("counts must be a non-negative array with one column per arm")
    return x


@dataclass(frozen=True, slots=True)
class SrmChi2Result:
    """Pearson chi-square goodness of fit of the counts to the configured split."""

    statistic: Stat
    p_value: Stat
    degrees_of_freedom: int
    mismatch: BoolStat
    alpha: float


def srm_chi2(
    observed: npt.ArrayLike, weights: npt.ArrayLike, *, alpha: float = DEFAULT_SRM_ALPHA
) -> SrmChi2Result:
    """chi^2 = sum (o_i - e_i)^2 / e_i with e_i = w_i N / sum(w); p = chi2.sf(chi^2, k - 1); flag p < alpha.

    `observed` has arms on its last axis (leading axes: looks or runs). Valid at one planned look only.
    Reference: Fabijan et al., KDD 2019; Kohavi, Tang, Xu, Trustworthy Online Controlled Experiments,
    ch. 21.
    """
    from scipy import stats as sps

    check_alpha(alpha)
    x = _counts(observed)
    theta = _shares(weights, x.shape[-1])
    expected = x.sum(axis=-1, keepdims=True) * theta
    with np.errstate(divide="ignore", invalid="ignore"):
        cells = np.where(expected > 0.0, (x - expected) ** 2 / expected, 0.0)
    statistic = cells.sum(axis=-1)
    dof = x.shape[-1] - 1
    p_value = sps.chi2.sf(statistic, dof)
    return SrmChi2Result(to_stat(statistic), to_stat(p_value), dof, to_bool_stat(p_value < alpha), alpha)


def _log_multivariate_beta(a: FloatArray) -> FloatArray:
    from scipy import special

    return np.asarray(special.gammaln(a).sum(axis=-1) - special.gammaln(a.sum(axis=-1)), dtype=np.float64)


def dirichlet_multinomial_log_bayes_factor(
    counts: npt.ArrayLike,
    weights: npt.ArrayLike,
    *,
    prior_concentration: float = DEFAULT_PRIOR_CONCENTRATION,
) -> Stat:
    """ln BF of "shares ~ Dirichlet(c theta)" against "shares = theta" for cumulative counts (last axis).

    Reference: Lindon & Malek, NeurIPS 2022, section 3 (their Dirichlet-multinomial test martingale).
    """
    if not prior_concentration > 0.0:
        raise ValueError("prior_concentration must be positive")
    x = _counts(counts)
    theta = _shares(weights, x.shape[-1])
    prior = prior_concentration * theta
    null_log_likelihood = (x * np.log(theta)).sum(axis=-1)
    log_bf = _log_multivariate_beta(prior + x) - _log_multivariate_beta(prior) - null_log_likelihood
    return to_stat(log_bf)


def _running_p_values(log_bf: FloatArray) -> FloatArray:
    """p_n = min(1, 1/BF_1, ..., 1/BF_n) along the looks (last axis)."""
    return np.asarray(np.minimum.accumulate(np.exp(-np.maximum(log_bf, 0.0)), axis=-1), dtype=np.float64)


def _first_true(flags: BoolArray) -> int | IntArray:
    first = np.where(flags.any(axis=-1), flags.argmax(axis=-1), -1)
    return int(first) if first.ndim == 0 else first.astype(np.int64)


@dataclass(frozen=True, slots=True)
class SequentialSrmResult:
    """Per look: ln Bayes factor, always-valid p-value (running minimum) and the mismatch flag."""

    log_bayes_factor: FloatArray
    p_value: FloatArray
    mismatch: BoolArray
    first_mismatch: int | IntArray


def _cumulative(counts: npt.ArrayLike, increments: bool) -> FloatArray:
    x = _counts(counts)
    if x.ndim < 2:
        raise ValueError("counts over time need shape (..., looks, arms)")
    return np.asarray(np.cumsum(x, axis=-2), dtype=np.float64) if increments else x


def sequential_srm(
    counts: npt.ArrayLike,
    weights: npt.ArrayLike,
    *,
    alpha: float = DEFAULT_SRM_ALPHA,
    increments: bool = False,
    prior_concentration: float = DEFAULT_PRIOR_CONCENTRATION,
) -> SequentialSrmResult:
    """Sequential SRM over looks: counts shaped (..., looks, arms), cumulative unless `increments`.

    Flags the first look where BF >= 1/alpha (equivalently the always-valid p <= alpha).
    Reference: Lindon & Malek, NeurIPS 2022.
    """
    check_alpha(alpha)
    log_bf = as_floats(
        dirichlet_multinomial_log_bayes_factor(
            _cumulative(counts, increments), weights, prior_concentration=prior_concentration
        )
    )
    p_value = _running_p_values(log_bf)
    mismatch = p_value <= alpha
    return SequentialSrmResult(log_bf, p_value, mismatch, _first_true(mismatch))


@dataclass(frozen=True, slots=True)
class SequentialSrmState:
    """Running state of the sequential SRM test for a gateway that checks after every batch of units.

    Immutable: `update` returns the next state, so a caller can keep, persist or compare states.
    Works the same for the canary count test (feed error counts, with the traffic split as weights).
    """

    shares: tuple[float, ...]
    counts: tuple[int, ...]
    log_bayes_factor: float
    p_value: float
    alpha: float
    prior_concentration: float

    @classmethod
    def start(
        cls,
        weights: Sequence[float],
        *,
        alpha: float = DEFAULT_SRM_ALPHA,
        prior_concentration: float = DEFAULT_PRIOR_CONCENTRATION,
    ) -> SequentialSrmState:
        check_alpha(alpha)
        if not prior_concentration > 0.0:
            raise ValueError("prior_concentration must be positive")
        shares = tuple(float(s) for s in _shares(weights, len(weights)))
        return cls(shares, (0,) * len(shares), 0.0, 1.0, alpha, prior_concentration)

    def update(self, new_counts: Sequence[int]) -> SequentialSrmState:
        """Add the units (or events) seen since the last update, one count per arm."""
        if len(new_counts) != len(self.counts) or any(c < 0 for c in new_counts):
            raise ValueError("need one non-negative count per arm")
        counts = tuple(int(old + new) for old, new in zip(self.counts, new_counts, strict=True))
        log_bf = float(
            dirichlet_multinomial_log_bayes_factor(
                counts, self.shares, prior_concentration=self.prior_concentration
            )
        )
        p_value = min(self.p_value, float(np.exp(-max(log_bf, 0.0))))
        return SequentialSrmState(self.shares, counts, log_bf, p_value, self.alpha, self.prior_concentration)

    @property
    def mismatch(self) -> bool:
        """True once the Bayes factor has ever reached 1/alpha (the flag never clears by itself)."""
        return self.p_value <= self.alpha

    @property
    def observed_over_expected(self) -> tuple[float, ...]:
        """Per arm: observed share / expected share (1.0 everywhere when nothing is seen yet)."""
        total = sum(self.counts)
        if total == 0:
            return (1.0,) * len(self.counts)
        return tuple(count / total / share for count, share in zip(self.counts, self.shares, strict=True))


@dataclass(frozen=True, slots=True)
class CanaryCountResult:
    """Per look: ln BF, always-valid p, the candidate's event-rate ratio to the rest, and the alarm.

    `candidate_worse` is raised at looks where p <= alpha and the candidate holds more than its share
    of the events; it can only be rarer than the two-sided alarm, so it keeps the same error bound.
    """

    log_bayes_factor: FloatArray
    p_value: FloatArray
    rate_ratio: FloatArray
    candidate_worse: BoolArray
    first_alarm: int | IntArray


def canary_count_test(
    event_counts: npt.ArrayLike,
    traffic_weights: npt.ArrayLike,
    *,
    candidate: int = 1,
    alpha: float = 0.05,
    increments: bool = False,
    prior_concentration: float = DEFAULT_PRIOR_CONCENTRATION,
) -> CanaryCountResult:
    """Is the candidate arm producing more errors than its share of traffic? Checked at every look.

    If every arm has the same error rate per request, each error lands in arm i with probability
    theta_i = that arm's traffic share, whatever the traffic volume does over time; so the arm labels
    of errors follow the multinomial the SRM test checks. rate_ratio = (x_c/theta_c) / (x_rest/theta_rest).
    Counts are (..., looks, arms), cumulative unless `increments`.
    Reference: Lindon, Sanden, Shirikian, KDD 2022 (arXiv 2205.14762), sections 3-4.
    """
    check_alpha(alpha)
    cumulative = _cumulative(event_counts, increments)
    k = cumulative.shape[-1]
    if not 0 <= candidate < k:
        raise ValueError(f"candidate must index one of the {k} arms")
    theta = _shares(traffic_weights, k)
    srm = sequential_srm(cumulative, theta, alpha=alpha, prior_concentration=prior_concentration)
    candidate_events = cumulative[..., candidate]
    other_events = cumulative.sum(axis=-1) - candidate_events
    other_share = 1.0 - theta[candidate]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_ratio = (candidate_events / theta[candidate]) / (other_events / other_share)
    worse = srm.mismatch & (candidate_events > theta[candidate] * cumulative.sum(axis=-1))
    return CanaryCountResult(srm.log_bayes_factor, srm.p_value, rate_ratio, worse, _first_true(worse))


# The planned looks of the alpha-spent chi-square: at 1/4, 2/4, 3/4 and all of the planned units.
# Four looks catch a gross imbalance early; the spending function alpha * t^4 keeps about 70 % of the
# level for the last look, so a subtle 51/49 split there is found almost as often as by one chi-square.
SPENT_LOOKS = 4
SPENDING_EXPONENT = 4.0


def spent_alpha(looks: int = SPENT_LOOKS, alpha: float = DEFAULT_SRM_ALPHA) -> FloatArray:
    """The level of each planned look: alpha (t_k^4 - t_(k-1)^4) with t_k = k / looks.

    Testing look k at its own level and flagging at any look keeps the overall false-alarm rate
    <= alpha by the union bound, whatever the correlation between looks (Lan & DeMets, Biometrika
    1983, for spending functions; Kim & DeMets 1987 for the power family alpha t^rho).
    """
    check_alpha(alpha)
    if looks < 1:
        raise ValueError("need at least one look")
    t = np.arange(looks + 1, dtype=np.float64) / looks
    return np.asarray(alpha * np.diff(t**SPENDING_EXPONENT), dtype=np.float64)


def spent_chi2_srm(
    counts_at_looks: npt.ArrayLike, weights: npt.ArrayLike, *, alpha: float = DEFAULT_SRM_ALPHA
) -> BoolArray:
    """Mismatch flags of the alpha-spent chi-square: counts shaped (..., looks, arms), the cumulative
    counts when the total first reached k/looks of the planned units (a look not yet reached may hold
    zeros: it never flags). True at a look once any look so far flagged."""
    x = _counts(counts_at_looks)
    if x.ndim < 2:
        raise ValueError("counts at looks need shape (..., looks, arms)")
    levels = spent_alpha(x.shape[-2], alpha)
    p_value = as_floats(srm_chi2(x, weights, alpha=alpha).p_value)
    reached = x.sum(axis=-1) > 0.0
    flagged = reached & (p_value <= levels)
    return np.asarray(np.logical_or.accumulate(flagged, axis=-1), dtype=np.bool_)
