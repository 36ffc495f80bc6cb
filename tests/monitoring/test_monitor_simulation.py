"""Seeded simulations of the drift statistics, in the spirit of the project's statistics reference:
no drift stays under the warn threshold, a half-standard-deviation shift is flagged at the minimum
sample, and the binned statistics keep their documented relation to the exact ones.

Each run draws a fresh reference (569 rows, the size of the demo's breast-cancer reference) and a
fresh current sample, and goes through the monitor's own code: quantile bins from `reference`, the
windows and states of `series`, the statistics of `stats`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.spatial.distance import jensenshannon

from plugins.monitor.config import MonitorConfig
from plugins.monitor.decode import Observation
from plugins.monitor.reference import from_rows
from plugins.monitor.series import ModelSeries, Thresholds
from plugins.monitor.stats import js_distance, ks

DEFAULTS = MonitorConfig.model_validate({"models": {"m": {}}})
THRESHOLDS = Thresholds(DEFAULTS.psi_warn, DEFAULTS.psi_alert, DEFAULTS.min_samples, DEFAULTS.window)
REFERENCE_ROWS = 569
RUNS = 2000

Draw = Callable[[np.random.Generator, int], np.ndarray]
# A symmetric, a skewed and a discrete feature (ties merge quantile bins).
FEATURES: dict[str, Draw] = {
    "normal": lambda rng, n: rng.normal(size=n),
    "lognormal": lambda rng, n: rng.lognormal(sigma=0.8, size=n),
    "poisson": lambda rng, n: rng.poisson(3.0, size=n).astype(np.float64),
}


def _states(draw: Draw, rows: int, shift_sd: float, seed: int) -> list[str]:
    """The state of one feature after `rows` current rows, over RUNS seeded runs."""
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(RUNS):
        reference_rows = draw(rng, REFERENCE_ROWS)
        reference = from_rows(reference_rows.reshape(-1, 1), None, DEFAULTS.bins, "simulated")
        series = ModelSeries("m", "1", "", reference, THRESHOLDS)
        current = draw(rng, rows) + shift_sd * reference_rows.std()
        series.observe(Observation(rows=current.reshape(-1, 1)))
        states.append(series.feature_report()[0]["state"])
    return states


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_no_drift_stays_ok_in_99_percent_of_runs_at_the_minimum_sample(feature: str) -> None:
    # The minimum sample is where PSI's noise is largest: every larger window is quieter.
    states = _states(FEATURES[feature], DEFAULTS.min_samples, 0.0, seed=20261207)
    flagged = sum(state != "ok" for state in states) / RUNS
    assert flagged <= 0.01, flagged


def test_a_half_sd_shift_is_flagged_within_the_minimum_sample() -> None:
    """Stated sample count: 500 rows (min_samples), flagged (warn or alert) in >= 99% of runs."""
    states = _states(FEATURES["normal"], DEFAULTS.min_samples, 0.5, seed=7)
    flagged = sum(state != "ok" for state in states) / RUNS
    assert flagged >= 0.99, flagged


def test_below_the_minimum_sample_nothing_is_flagged() -> None:
    states = _states(FEATURES["normal"], DEFAULTS.min_samples - 1, 2.0, seed=8)
    assert set(states) == {"ok"}


def test_binned_ks_is_a_lower_bound_within_one_bin_of_the_exact_statistic() -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        reference_rows = rng.normal(size=REFERENCE_ROWS)
        current = rng.normal(loc=rng.uniform(0, 1), size=800)
        reference = from_rows(reference_rows.reshape(-1, 1), None, DEFAULTS.bins, "simulated")
        expected = reference.counts[0]
        observed = np.bincount(reference.bin_of(0, current), minlength=len(expected))
        binned = ks(expected, observed)
        exact = scipy_stats.ks_2samp(reference_rows, current).statistic
        widest = max((expected / expected.sum()).max(), (observed / observed.sum()).max())
        assert binned <= exact + 1e-12
        assert exact - binned <= widest + 1e-12


def test_js_distance_agrees_with_scipy() -> None:
    rng = np.random.default_rng(12)
    for _ in range(200):
        a, b = rng.integers(0, 50, 10), rng.integers(0, 50, 10)
        assert js_distance(a, b) == pytest.approx(jensenshannon(a, b, base=2), abs=1e-9)
