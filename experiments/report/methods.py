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
        "Differences and relative differences of ratio metrics with normal (Wald) intervals and p-values "
        "from the delta-method standard error; valid at one planned look.",
        "Deng, Knoblich, Lu, KDD 2018; GrowthBook docs/statistics/details.mdx",
    ),
    MethodNote(
        "always-valid inference",
        "Normal-mixture sequential test: always-valid p-values (running minimum of 1/Lambda) and "
        "confidence sequences, tuned to be tightest at N* units; valid however often the report is read.",
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
        "Chi-square goodness of fit at this look, and the sequential Dirichlet-multinomial test that "
        "stays valid under continuous checking (the one that blocks), both at p <= 0.001.",
        "Fabijan et al., 'Diagnosing Sample Ratio Mismatch', KDD 2019; Lindon, Malek, 'Anytime-Valid "
        "Inference for Multinomial Count Data', NeurIPS 2022",
    ),
    MethodNote(
        "latency quantiles",
        "Rank-based intervals for p50 / p95 / p99 and their differences, read from a log-bucketed "
        "histogram within 1 % of the exact values; with buckets 2 % wide, a difference under one bucket "
        "is not resolved, and an interval narrower than a bucket is optimistic.",
        "Deng, Knoblich, Lu, KDD 2018, section 4.2; Masson, Rim, Lee, 'DDSketch', VLDB 2019",
    ),
    MethodNote(
        "keep running",
        "Units still needed: the sequential sample size for the larger of the observed effect and a 2 % "
        "relative change, at 80 % power.",
        "Johari et al., KDD 2017, section 4; Chow, Shao, Wang, Sample Size Calculations, ch. 3",
    ),
)

_CANARY = MethodNote(
    "canary guardrails",
    "Each controller tick tests every guardrail one-sided with the mixture test against its bound "
    "(candidate - baseline, candidate - r x baseline, or candidate alone), keeping the running minimum "
    "p-value over the step; a significant regression rolls back.",
    "Johari et al., KDD 2017; Lindon, Sanden, Shirikian, 'Rapid Regression Detection in Software "
    "Deployments through Sequential Testing', KDD 2022",
)


def method_notes(*, canary: bool) -> tuple[MethodNote, ...]:
    return (*_CORE, _CANARY) if canary else _CORE
