"""Canary guardrails: is the candidate worse than a configured limit, by an always-valid test?

Each guardrail becomes one tested quantity with a null value and a "worse" direction:
    max_increase k:  candidate - baseline        > k   (one-sided "greater", null k)
    max_ratio r:     candidate - r * baseline    > 0   ("greater", null 0)
    min_ratio r:     candidate - r * baseline    < 0   ("less", null 0)
    max m:           candidate                   > m   ("greater", null m)
The mixture sequential test (`experiments.stats.sequential`) runs on it at every controller tick.
An error rate is tested with the variance it would have at the null, p0(1 - p0) per request (scaled
by the design effect the delta method measured over units), as a score test is: at the null that is
its variance, and a candidate well past its limit is judged against the spread of one at the limit
rather than its own larger one, which finds a 2 % candidate against a 1 % limit with half the requests.
The shadow disagreement rate is likewise tested with the null's variance m(1 - m)/n, which stays
positive when no disagreement has been seen yet.

Outcome per guardrail: "regressed" (significant: roll back), "exceeded" (the limit lies inside the
one-sided confidence bound, so the candidate is not yet shown to be within it: do not advance; a
point estimate just under the limit does not advance a candidate past it), "insufficient_data"
(below the burn-in, or no estimate: do not advance), "holds".

Error control over the whole rollout: one always-valid test per guardrail over every step. Each step
is a phase with data of its own, and its mixture likelihood ratio Lambda is a test martingale that
starts at 1; the controller carries the product of the ratios the earlier steps ended with
(`carried_log_lr`, a sum of logs) and multiplies the current step's in, which is again a test
martingale (stopped at the step change, continued by a fresh one). Its p-value, the running minimum of
1/(carried x Lambda) over every tick of the rollout, keeps the full alpha across all steps and looks
(Ville's inequality), where a split of alpha/K per step made every rollback wait for ln K more
evidence. Across guardrails the always-valid p-values are Holm-adjusted (`holm_across`), so a false
rollback has probability <= alpha over every step, guardrail and look together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from experiments.config import GuardrailConfig
from experiments.estimates import Estimate, difference_looks, estimate, single_look
from experiments.stats import Looks, SequentialSettings, holm, log_likelihood_ratios, sequential_test
from experiments.stats.restricted import restricted_rate_standard_error
from experiments.store.base import PhaseData

# A score test's normal approximation needs some errors where the null puts them: with fewer than
# three expected at the null (a 1 % limit and under 300 candidate requests) a look gives no evidence.
# Simulated at the limit over three steps and two guardrails, the false-rollback rate is 3.7-4.7 %
# with this floor (baselines 0-5 %), and creeps towards alpha without one at rates near 0.
MIN_NULL_ERRORS = 3.0

GuardrailStatus = Literal["regressed", "exceeded", "insufficient_data", "holds"]
WorseSide = Literal["greater", "less"]


@dataclass(frozen=True, slots=True)
class ShadowTally:
    """Shadow comparisons so far: how many answers were compared and how many disagreed."""

    compared: int
    disagreements: int


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    metric: str
    bound: str
    threshold: float
    status: GuardrailStatus
    baseline: float
    candidate: float
    tested: float
    """The tested quantity's estimate (see the module docstring)."""
    null: float
    standard_error: float
    statistic: float
    p_value: float
    """Always-valid, one-sided: the running minimum over every tick of the rollout, all steps."""
    confidence_bound: float
    """This step's confidence sequence bound on the tested quantity on the "worse" side's opposite
    end (lower bound for "greater", upper for "less"), with the observed variances: shown as
    evidence; the rollback rests on `p_value`, the rollout's chained score test."""
    baseline_n: int
    candidate_n: int
    upper_bound: float = math.nan
    """The one-sided (1 - alpha) fixed-horizon bound on the tested quantity towards "worse": the
    hold compares it with the null."""
    p_value_adjusted: float = math.nan
    """`p_value` after Holm across this step's guardrails (`holm_across`)."""
    log_lr: float = 0.0
    """ln Lambda of this step's data at this look (0 inside the burn-in): what the controller carries
    into the next step."""
    carried_log_lr: float = 0.0
    """The sum of ln Lambda the earlier steps ended with (the rollout's evidence before this step)."""

    @property
    def key(self) -> str:
        return f"{self.metric}/{self.bound}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Test:
    looks: Looks
    null: float
    alternative: WorseSide
    exceeded: bool
    baseline: Estimate | None
    candidate: Estimate


def guardrail_bound(guardrail: GuardrailConfig) -> tuple[str, float]:
    """(bound name, threshold) of a guardrail: its one bound that is set."""
    for name in ("max_increase", "max_ratio", "min_ratio", "max"):
        value = getattr(guardrail, name)
        if value is not None:
            return name, float(value)
    raise ValueError("a guardrail needs one bound")


def guardrail_key(guardrail: GuardrailConfig) -> str:
    """A stable name for a guardrail: its metric and bound (the controller keys its memo by it)."""
    return f"{guardrail.metric}/{guardrail_bound(guardrail)[0]}"


def _shadow_test(threshold: float, shadow: ShadowTally | None) -> _Test | None:
    if shadow is None or shadow.compared <= 0:
        return None
    n = shadow.compared
    rate = shadow.disagreements / n
    variance = threshold * (1.0 - threshold) if 0.0 < threshold < 1.0 else rate * (1.0 - rate)
    looks = single_look(rate, math.sqrt(variance / n), n)
    return _Test(
        looks, threshold, "greater", rate > threshold, None, Estimate(rate, math.sqrt(variance / n), n)
    )


def _design_effect(found: Estimate, requests: int) -> float:
    """The delta method's variance of a rate over the binomial one (at least 1)."""
    spread = found.value * (1.0 - found.value)
    if spread <= 0.0 or requests <= 0 or not math.isfinite(found.standard_error):
        return 1.0
    return max(1.0, found.standard_error**2 * requests / spread)


def _score_looks(
    bound: str, threshold: float, data: PhaseData, baseline_arm: str, candidate_arm: str, test: _Test
) -> Looks:
    """The look the always-valid test takes at an error rate: the tested quantity with its standard
    error at the null (`experiments.stats.restricted`); no evidence (se NaN) while the candidate's
    expected errors at the null are fewer than `MIN_NULL_ERRORS`."""
    arm_c, arm_b = data.arm(candidate_arm), data.arm(baseline_arm)
    ratio, increase = {"max": (0.0, threshold), "max_increase": (1.0, threshold)}.get(bound, (threshold, 0.0))
    baseline = test.baseline
    b_value = baseline.value if baseline is not None else 0.0
    se, p_null = restricted_rate_standard_error(
        b_value * arm_b.requests,
        arm_b.requests,
        test.candidate.value * arm_c.requests,
        arm_c.requests,
        ratio=ratio,
        increase=increase,
        deff_b=_design_effect(baseline, arm_b.requests) if baseline is not None else 1.0,
        deff_c=_design_effect(test.candidate, arm_c.requests),
    )
    enough = float(p_null) * arm_c.requests >= MIN_NULL_ERRORS
    return replace(test.looks, standard_error=np.array([float(se) if enough else math.nan]))


def _metric_test(
    bound: str, threshold: float, baseline: Estimate | None, candidate: Estimate | None
) -> _Test | None:
    if candidate is None:
        return None
    if bound == "max":
        looks = single_look(candidate.value, candidate.standard_error, candidate.n)
        return _Test(looks, threshold, "greater", candidate.value > threshold, baseline, candidate)
    if baseline is None:
        return None
    if bound == "max_increase":
        tested = candidate.value - baseline.value
        looks = difference_looks(baseline, candidate)
        return _Test(looks, threshold, "greater", tested > threshold, baseline, candidate)
    tested = candidate.value - threshold * baseline.value
    looks = difference_looks(baseline, candidate, ratio=threshold)
    if bound == "max_ratio":
        return _Test(looks, 0.0, "greater", tested > 0.0, baseline, candidate)
    return _Test(looks, 0.0, "less", tested < 0.0, baseline, candidate)


def _without_estimate(
    metric: str, bound: str, threshold: float, data: PhaseData, baseline: str, candidate: str, p_value: float
) -> GuardrailResult:
    nan = math.nan
    return GuardrailResult(
        metric=metric,
        bound=bound,
        threshold=threshold,
        status="insufficient_data",
        baseline=nan,
        candidate=nan,
        tested=nan,
        null=nan,
        standard_error=nan,
        statistic=nan,
        p_value=p_value,
        confidence_bound=nan,
        baseline_n=data.arm(baseline).units,
        candidate_n=data.arm(candidate).units,
    )


def evaluate_guardrail(
    guardrail: GuardrailConfig,
    data: PhaseData,
    *,
    baseline_arm: str,
    candidate_arm: str,
    alpha: float,
    n_star: float,
    burn_in: int,
    shadow: ShadowTally | None = None,
    previous_p: float = 1.0,
    carried_log_lr: float = 0.0,
    hold_alpha: float | None = None,
) -> GuardrailResult:
    """One guardrail at one tick. `previous_p`: the running minimum p of the rollout so far;
    `carried_log_lr`: the evidence the earlier steps ended with (see the module docstring);
    `hold_alpha`: the level of the one-sided bound that must lie within the limit to advance
    (`alpha` when not given)."""
    bound, threshold = guardrail_bound(guardrail)
    if guardrail.metric == "shadow_disagreement":
        test = _shadow_test(threshold, shadow)
    else:
        baseline = estimate(data.arm(baseline_arm), guardrail.metric, alpha)
        candidate = estimate(data.arm(candidate_arm), guardrail.metric, alpha)
        test = _metric_test(bound, threshold, baseline, candidate)
    if test is None:
        found = _without_estimate(
            guardrail.metric, bound, threshold, data, baseline_arm, candidate_arm, previous_p
        )
        return replace(found, carried_log_lr=carried_log_lr)
    settings = SequentialSettings(
        n_star=n_star, alpha=alpha, alternative=test.alternative, burn_in=burn_in, null=test.null
    )
    result = sequential_test(test.looks, settings)
    evidence = test.looks
    if guardrail.metric == "error_rate":
        evidence = _score_looks(bound, threshold, data, baseline_arm, candidate_arm, test)
    log_lr = float(log_likelihood_ratios(evidence, settings)[-1])
    p_value = min(previous_p, math.exp(-max(carried_log_lr + log_lr, 0.0)))
    confidence_bound = float(result.ci_low[-1] if test.alternative == "greater" else result.ci_high[-1])
    tested = float(test.looks.estimate[-1])
    se = float(test.looks.standard_error[-1])
    statistic = (tested - test.null) / se if se > 0.0 else math.nan
    enough = float(test.looks.n_min_arm[-1]) >= burn_in
    z = NormalDist().inv_cdf(1.0 - (alpha if hold_alpha is None else hold_alpha))
    upper = tested + z * se if test.alternative == "greater" else tested - z * se
    past_limit = upper > test.null if test.alternative == "greater" else upper < test.null
    status: GuardrailStatus
    if p_value <= alpha:
        status = "regressed"
    elif test.exceeded or (past_limit and enough) or not math.isfinite(upper):
        status = "exceeded"
    elif not enough:
        status = "insufficient_data"
    else:
        status = "holds"
    return GuardrailResult(
        metric=guardrail.metric,
        bound=bound,
        threshold=threshold,
        status=status,
        baseline=test.baseline.value if test.baseline is not None else math.nan,
        candidate=test.candidate.value,
        tested=tested,
        null=test.null,
        standard_error=se,
        statistic=statistic,
        p_value=p_value,
        confidence_bound=confidence_bound,
        baseline_n=test.baseline.n if test.baseline is not None else 0,
        candidate_n=test.candidate.n,
        upper_bound=upper,
        p_value_adjusted=p_value,
        log_lr=log_lr,
        carried_log_lr=carried_log_lr,
    )


def holm_across(results: Sequence[GuardrailResult], level: float) -> list[GuardrailResult]:
    """Holm's step-down across a step's guardrails: regressed only where the adjusted p <= level;
    a guardrail significant alone but not after adjustment holds back the advance (exceeded)."""
    tested = [i for i, r in enumerate(results) if math.isfinite(r.p_value)]
    adjusted = list(results)
    if not tested:
        return adjusted
    p_values = holm(np.array([results[i].p_value for i in tested]))
    for i, p in zip(tested, p_values, strict=True):
        result = replace(results[i], p_value_adjusted=float(p))
        if result.status == "regressed" and float(p) > level:
            result = replace(result, status="exceeded")
        elif result.status != "regressed" and float(p) <= level:
            result = replace(result, status="regressed")
        adjusted[i] = result
    return adjusted
