"""Always-valid inference: the normal-mixture sequential test and its confidence sequences.

A dashboard refreshed every minute, or a canary controller deciding every interval, looks at the data
many times. A fixed-horizon p-value checked at every look and acted on at the first p < 0.05 has a
false-positive rate of 30-50 %. The mixture sequential probability ratio test instead keeps a
likelihood ratio averaged over a normal prior on the effect, Lambda_n; under the null it is a
martingale with mean 1, so by Ville's inequality P(Lambda_n ever reaches 1/alpha) <= alpha, however
often and however long one looks.

On the z scale, with z = (delta_hat - theta_0)/se, N = n_A + n_B and a = N rho^2:
    Lambda = (1 + a)^(-1/2) exp(z^2 a / (2 (1 + a)))                  (two-sided)
    Lambda+ = 2 Phi(z sqrt(a/(1 + a))) * Lambda                       (one-sided, half-normal prior)
This is Johari et al.'s Lambda_n = sqrt(V/(V + n tau^2)) exp(n^2 tau^2 (delta - theta_0)^2 /
(2V(V + n tau^2))) with se^2 = V/n and a = n tau^2 / V, in GrowthBook's parameterisation where
rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / N* makes the confidence sequence narrowest at N = N*.
Always-valid p-value: p_n = min(p_(n-1), 1/Lambda_n). Confidence sequence: the theta_0 not rejected,
    delta_hat -+ se * sqrt((1 + a)/a * ln((1 + a)/alpha^2)).
References: Johari, Koomen, Pekelis, Walsh, "Peeking at A/B Tests", KDD 2017 (and Operations Research
2022); Howard, Ramdas, McAuliffe, Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence
sequences", Ann. Statist. 2021; GrowthBook docs/statistics/sequential.mdx and gbstats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import (
    Alternative,
    BoolArray,
    FloatArray,
    IntArray,
    Stat,
    as_floats,
    check_alpha,
    check_alternative,
    to_stat,
)
from experiments.stats.normal import z_statistic

# Optimizely's stats engine makes no decision before 100 units per arm: below that the variance
# estimates inside se are too noisy for the normal approximation the mixture relies on.
DEFAULT_BURN_IN = 100

# z is clipped to this magnitude so z^2 and log Phi(z) stay finite (the one-sided formula would
# otherwise compute inf - inf). Nothing is lost: at |z| = 1e6 even a mixture scale a = 1e-10 (a look
# at 1e-11 of N*) gives p < e^-50 in the tested direction.
Z_CLIP = 1e6

# Bisection steps for the one-sided boundary, searched between the two-sided boundaries at 2 alpha
# and alpha (a bracket under 2 wide): 52 halvings reach float64 resolution.
BOUNDARY_STEPS = 52
# No practical mixture needs a z boundary near 64: even a = 1e12 with alpha = 1e-6 needs about 8.
BOUNDARY_Z_MAX = 64.0


def mixture_rho(n_star: float, alpha: float = 0.05, alternative: Alternative = "two-sided") -> float:
    """GrowthBook's mixing scale: rho = sqrt((-2 ln alpha + ln(1 - 2 ln alpha)) / N*).

    N* is the total sample (both arms) at which the confidence sequence should be tightest: pick the
    sample expected when the decision will be made. One-sided tests spend alpha on one tail, which
    behaves like a two-sided test at 2 alpha, so they are tuned with 2 alpha.
    """
    check_alpha(alpha)
    check_alternative(alternative)
    if not n_star > 0:
        raise ValueError(f"n_star must be positive, got {n_star}")
    level = alpha if alternative == "two-sided" else min(2.0 * alpha, 0.5)
    log_alpha = math.log(level)
    return math.sqrt((-2.0 * log_alpha + math.log(1.0 - 2.0 * log_alpha)) / n_star)


def log_mixture_likelihood_ratio(
    z: npt.ArrayLike, a: npt.ArrayLike, alternative: Alternative = "two-sided"
) -> FloatArray:
    """ln Lambda for z statistics at mixture scale a = N rho^2 (see the module docstring)."""
    from scipy import special

    check_alternative(alternative)
    zz = np.clip(as_floats(z), -Z_CLIP, Z_CLIP)
    aa = as_floats(a)
    shrink = aa / (1.0 + aa)
    log_lr = -0.5 * np.log1p(aa) + 0.5 * zz * zz * shrink
    if alternative == "two-sided":
        return np.asarray(log_lr, dtype=np.float64)
    signed = zz if alternative == "greater" else -zz
    return np.asarray(log_lr + math.log(2.0) + special.log_ndtr(signed * np.sqrt(shrink)), dtype=np.float64)


def boundary_z(a: npt.ArrayLike, alpha: float = 0.05, alternative: Alternative = "two-sided") -> Stat:
    """The |z| (or z, one-sided) at which Lambda reaches 1/alpha, for mixture scale a.

    Two-sided in closed form: sqrt((1 + a)/a * ln((1 + a)/alpha^2)); one-sided by bisection (Lambda+
    increases with z). Multiply by se for the confidence sequence's half-width.
    """
    check_alpha(alpha)
    check_alternative(alternative)
    aa = as_floats(a)
    if np.any(aa <= 0.0):
        raise ValueError("the mixture scale a must be positive")
    if alternative == "two-sided":
        return to_stat(np.sqrt((1.0 + aa) / aa * np.log((1.0 + aa) / alpha**2)))
    unique, inverse = np.unique(aa, return_inverse=True)
    target = -math.log(alpha)
    # Lambda <= Lambda+ <= 2 Lambda for z >= 0, so the one-sided boundary lies between the two-sided
    # ones at 2 alpha and at alpha (closed form): a bracket narrower than 1 needs far fewer halvings.
    low = np.sqrt((1.0 + unique) / unique * np.maximum(np.log((1.0 + unique) / (2.0 * alpha) ** 2), 0.0))
    high = np.minimum(np.sqrt((1.0 + unique) / unique * np.log((1.0 + unique) / alpha**2)), BOUNDARY_Z_MAX)
    for _ in range(BOUNDARY_STEPS):
        middle = (low + high) / 2.0
        above = log_mixture_likelihood_ratio(middle, unique, "greater") >= target
        high = np.where(above, middle, high)
        low = np.where(above, low, middle)
    return to_stat(high[inverse].reshape(aa.shape))


@dataclass(frozen=True, slots=True)
class Looks:
    """Per-look summaries of delta_hat = B - A; the last axis runs over looks (leading: runs)."""

    estimate: FloatArray
    standard_error: FloatArray
    n_total: FloatArray
    n_min_arm: FloatArray


def mean_difference_looks(
    n_a: npt.ArrayLike,
    mean_a: npt.ArrayLike,
    var_a: npt.ArrayLike,
    n_b: npt.ArrayLike,
    mean_b: npt.ArrayLike,
    var_b: npt.ArrayLike,
) -> Looks:
    """Looks for a difference of means: se^2 = s_A^2/n_A + s_B^2/n_B (cumulative statistics per look)."""
    na, nb = np.broadcast_arrays(as_floats(n_a), as_floats(n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(as_floats(var_a) / na + as_floats(var_b) / nb)
    estimate, se, na, nb = np.broadcast_arrays(as_floats(mean_b) - as_floats(mean_a), se, na, nb)
    return Looks(estimate, se, na + nb, np.minimum(na, nb))


def proportion_difference_looks(
    successes_a: npt.ArrayLike, n_a: npt.ArrayLike, successes_b: npt.ArrayLike, n_b: npt.ArrayLike
) -> Looks:
    """Looks for a difference of rates: se^2 = p_A(1-p_A)/n_A + p_B(1-p_B)/n_B (Johari et al.'s V/n)."""
    na, nb = np.broadcast_arrays(as_floats(n_a), as_floats(n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        pa, pb = as_floats(successes_a) / na, as_floats(successes_b) / nb
        se = np.sqrt(pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb)
    return Looks(pb - pa, se, na + nb, np.minimum(na, nb))


@dataclass(frozen=True, slots=True)
class SequentialSettings:
    """How the mixture test runs: level, tuning sample N* (total of both arms), sidedness, burn-in.

    alternative "greater" asks whether B - A > null (e.g. the candidate's error rate is higher: a
    guardrail), "less" the opposite. `burn_in` is the units per arm before any decision.
    """

    n_star: float
    alpha: float = 0.05
    alternative: Alternative = "two-sided"
    burn_in: int = DEFAULT_BURN_IN
    null: float = 0.0

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        check_alternative(self.alternative)
        if self.burn_in < 0:
            raise ValueError("burn_in must be non-negative")
        mixture_rho(self.n_star, self.alpha, self.alternative)

    @property
    def rho(self) -> float:
        return mixture_rho(self.n_star, self.alpha, self.alternative)


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """Per look: always-valid p (running minimum), confidence sequence (running intersection), decision.

    `first_rejection` is the index of the first look with p <= alpha, or -1 if none.
    """

    estimate: FloatArray
    p_value: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    reject: BoolArray
    first_rejection: int | IntArray


def _eligible(looks: Looks, settings: SequentialSettings) -> BoolArray:
    """Looks that may carry evidence: past the burn-in, with a finite estimate and a positive se.

    A zero se (no events yet in either arm, or constant values) says nothing about the spread; used
    as is it would shrink the confidence sequence to a point that the running intersection keeps.
    """
    informative = np.isfinite(looks.estimate) & np.isfinite(looks.standard_error) & (looks.standard_error > 0)
    return np.asarray(informative & (looks.n_min_arm >= max(settings.burn_in, 1)), dtype=np.bool_)


def log_likelihood_ratios(looks: Looks, settings: SequentialSettings) -> FloatArray:
    """ln Lambda_n at every look; 0 (no evidence either way) for looks inside the burn-in, with
    se = 0, or with a non-finite statistic.

    Under the null, Lambda is a nonnegative martingale with mean 1. Such martingales can be chained:
    stopping one at a stopping time and multiplying its value by a fresh one started there gives
    another (a canary's steps, `experiments.guardrails`), so ln Lambda of separate stretches of data
    add up into one always-valid test over all of them."""
    a = looks.n_total * settings.rho**2
    z = z_statistic(looks.estimate, looks.standard_error, settings.null)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_lr = log_mixture_likelihood_ratio(z, np.where(a > 0.0, a, 1.0), settings.alternative)
    usable = _eligible(looks, settings) & ~np.isnan(log_lr)
    return np.asarray(np.where(usable, log_lr, 0.0), dtype=np.float64)


def always_valid_p_values(looks: Looks, settings: SequentialSettings) -> FloatArray:
    """p_n = min(1, p_(n-1), 1/Lambda_n) along the looks; looks inside the burn-in, or with se = 0,
    give no evidence."""
    per_look = np.exp(-np.maximum(log_likelihood_ratios(looks, settings), 0.0))
    return np.asarray(np.minimum.accumulate(per_look, axis=-1), dtype=np.float64)


def confidence_sequence(
    looks: Looks, settings: SequentialSettings, *, intersect: bool = True
) -> tuple[FloatArray, FloatArray]:
    """Always-valid bounds for B - A at every look: delta_hat -+ boundary_z(a) * se.

    The bounds hold at all looks at once with probability >= 1 - alpha, so their running intersection
    (the default) holds too and never widens. One-sided settings give one bound (the other infinite).
    """
    eligible = _eligible(looks, settings)
    a = np.where(looks.n_total > 0.0, looks.n_total, 1.0) * settings.rho**2
    half = as_floats(boundary_z(a, settings.alpha, settings.alternative)) * looks.standard_error
    with np.errstate(invalid="ignore"):
        low = np.where(eligible, looks.estimate - half, -np.inf)
        high = np.where(eligible, looks.estimate + half, np.inf)
    if settings.alternative == "greater":
        high = np.full_like(high, np.inf)
    elif settings.alternative == "less":
        low = np.full_like(low, -np.inf)
    if intersect:
        low = np.maximum.accumulate(low, axis=-1)
        high = np.minimum.accumulate(high, axis=-1)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def sequential_test(looks: Looks, settings: SequentialSettings) -> SequentialResult:
    """Run the mixture test over all looks: p-values, confidence sequence and first rejection."""
    p_value = always_valid_p_values(looks, settings)
    low, high = confidence_sequence(looks, settings)
    reject = p_value <= settings.alpha
    first = np.where(reject.any(axis=-1), reject.argmax(axis=-1), -1)
    return SequentialResult(
        estimate=looks.estimate,
        p_value=p_value,
        ci_low=low,
        ci_high=high,
        reject=reject,
        first_rejection=int(first) if first.ndim == 0 else first.astype(np.int64),
    )
