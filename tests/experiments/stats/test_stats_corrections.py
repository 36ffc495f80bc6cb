"""Holm and Benjamini-Hochberg: hand-computed vectors and error-rate control in simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import benjamini_hochberg, holm


def test_holm_on_a_known_vector() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_ties_in_input_order() -> None:
    assert holm([0.5, 0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert holm([0.02, 0.01, 0.02]).tolist() == pytest.approx([0.04, 0.03, 0.04])


def test_benjamini_hochberg_on_a_known_vector() -> None:
    # Sorted: 0.005*4/1 = 0.02, 0.01*4/2 = 0.02, 0.03*4/3 = 0.04, 0.04*4/4 = 0.04 (running min from the top).
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_adjustments_work_row_by_row() -> None:
    p = np.array([[0.01, 0.04, 0.03, 0.005], [0.2, 0.01, 0.5, 0.03]])
    assert np.allclose(holm(p)[1], holm(p[1]))
    assert np.allclose(benjamini_hochberg(p)[1], benjamini_hochberg(p[1]))


def test_invalid_p_values_are_rejected() -> None:
    with pytest.raises(ValueError):
        holm([0.1, 1.2])
    with pytest.raises(ValueError):
        benjamini_hochberg([math.nan])


def test_bh_keeps_fdr_and_holm_keeps_fwer_with_20_metrics_5_real() -> None:
    """20 metrics, 5 with a real effect (z shifted by 3): BH's FDR <= q, Holm's FWER <= alpha (+3 sd),
    while testing each metric at 0.05 unadjusted makes a false positive likely."""
    runs, metrics, real, level = 10_000, 20, 5, 0.05
    rng = np.random.default_rng(6)
    z = rng.standard_normal((runs, metrics))
    z[:, :real] += 3.0
    p = 2 * sps.norm.sf(np.abs(z))
    is_null = np.arange(metrics) >= real
    bh_rejected = benjamini_hochberg(p) <= level
    false = (bh_rejected & is_null).sum(axis=1)
    fdr = float(np.mean(false / np.maximum(bh_rejected.sum(axis=1), 1)))
    holm_fwer = float(np.mean(((holm(p) <= level) & is_null).any(axis=1)))
    raw_fwer = float(np.mean(((p <= level) & is_null).any(axis=1)))
    bh_power = float(np.mean(bh_rejected[:, :real]))
    print("bh_fdr =", fdr, "holm_fwer =", holm_fwer, "unadjusted_fwer =", raw_fwer, "bh_power =", bh_power)
    assert fdr <= level
    assert holm_fwer <= level + 3 * math.sqrt(level * (1 - level) / runs)
    assert raw_fwer > 0.4
    assert bh_power > 0.5  # it still finds most real effects: controlling FDR is not rejecting nothing
