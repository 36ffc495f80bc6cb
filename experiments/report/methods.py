"""The methods appendix: each test the report relies on, what it is used for, and where it comes from.

The references are those in the docstrings of `experiments.stats`, so the appendix and the code
cite the same sources.
"""

from __future__ import annotations

from experiments.report.model import MethodNote

_CORE = (
    MethodNote(
        "unit of analysis",
        "Per-request metrics (error rate, mean latency) are ratios of per-unit totals; their variance is "
        "the delta method over units, so requests of one user are not counted as independent trials.",
        "Deng, Knoblich, Lu, 'Applying the Delta Method in Metric Analytics', KDD 2018",
    ),
    MethodNote(
        "fixed-horizon intervals",
        "Differences of ratio metrics with normal (Wald) intervals and p-values from the delta-method "
        "standard error; relative differences on the log scale, exp(ln(B/A) -+ z sd) - 1, asymmetric "
        "and never below -100 %; valid at one planned look.",
        "Deng, Knoblich, Lu, KDD 2018; Kohavi, Tang, Xu, Trustworthy Online Controlled Experiments, ch. 18",
    ),
    MethodNote(
        "always-valid inference",
        "Normal-mixture sequential test, looked at every event time of the phase: the p-value shown is "
        "the running minimum of 1/Lambda over all those looks and the confidence sequence their running "
        "intersection, so a later refresh can only lower p and narrow the interval; tuned to be tightest "
        "at N* units; valid however often the report is read.",
        "Johari, Koomen, Pekelis, Walsh, 'Peeking at A/B Tests', KDD 2017; Howard, Ramdas, McAuliffe, "
        "Sekhon, Ann. Statist. 2021; GrowthBook docs/statistics/sequential.mdx",
    ),
    MethodNote(
        "multiple comparisons",
        "Sequential p-values adjusted with Holm across guardrails (family-wise error) and "
        "Benjamini-Hochberg across goal metrics (false discovery rate).",
        "Holm, Scand. J. Statist. 1979; Benjamini, Hochberg, JRSS B 1995",
    ),
    MethodNote(
        "sample ratio mismatch",
        "A chi-square at four planned looks (a quarter to all of N* units, counted by first exposure) "
        "with alpha spent as 0.0009 t^4, and the sequential Dirichlet-multinomial test at 0.0001 at "
        "every refresh: together a healthy split is flagged at most once per thousand experiments, "
        "however often checked. The chi-square p of this look is shown for reference.",
        "Fabijan et al., 'Diagnosing Sample Ratio Mismatch', KDD 2019; Lindon, Malek, 'Anytime-Valid "
        "Inference for Multinomial Count Data', NeurIPS 2022; Lan, DeMets, Biometrika 1983",
    ),
    MethodNote(
        "latency quantiles",
        "Rank-based intervals for p50 / p95 / p99 and their differences over units: the spread of the "
        "empirical CDF is the delta-method variance of per-unit counts, since one user's requests are "
        "not independent (read from the raw requests; the histogram, within 1 %, serves the CDF plots).",
        "Deng, Knoblich, Lu, KDD 2018, section 4.2; Masson, Rim, Lee, 'DDSketch', VLDB 2019",
    ),
    MethodNote(
        "keep running",
        "Units still needed: the sequential sample size for the pre-registered minimum detectable effect "
        "(`mde`, else a 2 % relative change) at 80 % power, never the observed effect; the verdict shows "
        "the planned units and the progress towards them.",
        "Johari et al., KDD 2017, section 4; Chow, Shao, Wang, Sample Size Calculations, ch. 3",
    ),
)

_VERDICT = MethodNote(
    "verdict",
    "Goals decide (ship on a significant improvement, roll back on a regression, else keep running); "
    "a significant guardrail regression blocks and rolls back; a failed health check invalidates "
    "the verdict. The reasons are listed in that order.",
    "Kohavi, Tang, Xu, Trustworthy Online Controlled Experiments, ch. 7 and 21",
)

_BAYES = MethodNote(
    "bayesian reading",
    "With a flat prior the posterior of the difference is normal around the estimate: chance to beat "
    "control Phi(d/se), expected loss se phi(d/se) - d Phi(-d/se), credible interval d -+ z se.",
    "GrowthBook docs/statistics/bayesian.mdx; Stucchio, 'Bayesian A/B Testing at VWO', 2015",
)

_CANARY = MethodNote(
    "canary guardrails",
    "Each controller tick tests every guardrail one-sided with the mixture test against its bound "
    "(candidate - baseline, candidate - r x baseline, or candidate alone); each step's likelihood ratio "
    "is chained into the next, so one always-valid test runs over the whole rollout at the full alpha, "
    "Holm-adjusted across guardrails, and a good candidate is rolled back with probability <= alpha; "
    "error rates use their variance at the null (a score test). A step advances only when the "
    "one-sided confidence bound (at alpha/K for K steps) is within every limit.",
    "Johari et al., KDD 2017; Lindon, Sanden, Shirikian, 'Rapid Regression Detection in Software "
    "Deployments through Sequential Testing', KDD 2022; Farrington & Manning, Stat. Med. 1990",
)

_SEGMENTS = MethodNote(
    "segments",
    "Each goal compared within every segment of the recorded dimensions (a unit in the segment of its "
    "first exposure) with the delta method, fixed-horizon; Holm across every segment of the metric; "
    "segments under 100 units per arm not tested; Cochran's Q per dimension for heterogeneity.",
    "Holm, Scand. J. Statist. 1979; Cochran, Biometrics 1954; Kohavi, Tang, Xu (2020), ch. 3",
)


def method_notes(*, canary: bool, bayesian: bool = False, segments: bool = False) -> tuple[MethodNote, ...]:
    return (
        *_CORE,
        _VERDICT,
        *((_BAYES,) if bayesian else ()),
        *((_SEGMENTS,) if segments else ()),
        *((_CANARY,) if canary else ()),
    )
