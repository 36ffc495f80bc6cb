"""Statistics for experiments: pure functions over numpy arrays, no I/O.

Modules, one idea each: `fixed` (Welch t, two proportions), `delta` (relative lift, ratio metrics),
`quantiles` (Deng-Knoblich-Yu quantile intervals), `bootstrap` (unit bootstrap of quantiles),
`rank_tests` (Mann-Whitney with Hodges-Lehmann), `power` (planning), `sequential` (mixture
sequential test, confidence sequences), `srm` (sample ratio mismatch, canary counts), `corrections`
(Holm, Benjamini-Hochberg), `summary` (running moments), `normal` (shared Wald inference).

scipy is imported inside the functions that call it, never at module level: importing it takes about
a second, and every gateway imports these modules at start, while only one that runs an A/B test or
a canary computes statistics (and imports scipy ahead of time with `preload_scipy`).
"""

import importlib

from experiments.stats.bootstrap import BootstrapInterval, bootstrap_quantile_difference, units_from_groups
from experiments.stats.corrections import benjamini_hochberg, holm
from experiments.stats.delta import RatioSummary, ratio_difference, ratio_metric_variance, relative_lift
from experiments.stats.fixed import (
    MeanDifference,
    ProportionDifference,
    proportion_difference_ci,
    two_proportion_test,
    welch_t,
)
from experiments.stats.normal import NormalEstimate, normal_inference
from experiments.stats.power import (
    achieved_power_means,
    achieved_power_proportions,
    minimum_detectable_effect_means,
    minimum_detectable_effect_proportions,
    required_sample_size_means,
    required_sample_size_proportions,
    sequential_sample_size_means,
)
from experiments.stats.quantiles import (
    QuantileDifference,
    QuantileInterval,
    min_sample_size,
    quantile_ci,
    quantile_difference_ci,
)
from experiments.stats.rank_tests import MannWhitneyResult, mann_whitney
from experiments.stats.sequential import (
    Looks,
    SequentialResult,
    SequentialSettings,
    always_valid_p_values,
    boundary_z,
    confidence_sequence,
    log_likelihood_ratios,
    mean_difference_looks,
    mixture_rho,
    proportion_difference_looks,
    sequential_test,
)
from experiments.stats.srm import (
    CanaryCountResult,
    SequentialSrmResult,
    SequentialSrmState,
    SrmChi2Result,
    canary_count_test,
    dirichlet_multinomial_log_bayes_factor,
    sequential_srm,
    srm_chi2,
)
from experiments.stats.summary import RunningMoments


def preload_scipy() -> None:
    """Import the parts of scipy these modules call, ahead of the first computation that needs them.

    A gateway that analyses experiments calls this as it applies them, in a worker thread, so that
    neither its first status request nor a canary's first controller tick stalls the event loop
    with requests in flight for the second the import takes."""
    for name in ("scipy.optimize", "scipy.special", "scipy.stats"):
        importlib.import_module(name)


__all__ = [
    "BootstrapInterval",
    "CanaryCountResult",
    "Looks",
    "MannWhitneyResult",
    "MeanDifference",
    "NormalEstimate",
    "ProportionDifference",
    "QuantileDifference",
    "QuantileInterval",
    "RatioSummary",
    "RunningMoments",
    "SequentialResult",
    "SequentialSettings",
    "SequentialSrmResult",
    "SequentialSrmState",
    "SrmChi2Result",
    "achieved_power_means",
    "achieved_power_proportions",
    "always_valid_p_values",
    "benjamini_hochberg",
    "bootstrap_quantile_difference",
    "boundary_z",
    "canary_count_test",
    "confidence_sequence",
    "dirichlet_multinomial_log_bayes_factor",
    "holm",
    "log_likelihood_ratios",
    "mann_whitney",
    "mean_difference_looks",
    "min_sample_size",
    "minimum_detectable_effect_means",
    "minimum_detectable_effect_proportions",
    "mixture_rho",
    "normal_inference",
    "preload_scipy",
    "proportion_difference_ci",
    "proportion_difference_looks",
    "quantile_ci",
    "quantile_difference_ci",
    "ratio_difference",
    "ratio_metric_variance",
    "relative_lift",
    "required_sample_size_means",
    "required_sample_size_proportions",
    "sequential_sample_size_means",
    "sequential_srm",
    "sequential_test",
    "srm_chi2",
    "two_proportion_test",
    "units_from_groups",
    "welch_t",
]
