"""Adjusted p-values for many comparisons (metrics x arms) in one experiment.

Twenty metrics tested at 0.05 each will show one "significant" change by chance alone in most
experiments. Holm controls the family-wise error rate (the chance of any false positive) and suits
guardrails, where one false alarm triggers an action; Benjamini-Hochberg controls the false discovery
rate (the expected share of false positives among the positives) and suits exploratory goal metrics.
Both take p-values along the last axis, so many simulated experiments adjust in one call.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import FloatArray, as_floats


def _check_p_values(p_values: npt.ArrayLike) -> FloatArray:
    p = as_floats(p_values)
    if p.ndim == 0:
        p = p.reshape(1)
    if np.any(np.isnan(p)) or np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("p-values must lie in [0, 1]")
    return p


def holm(p_values: npt.ArrayLike) -> FloatArray:
    """Holm's step-down adjusted p-values along the last axis.

    Sort p ascending: p_(1) <= ... <= p_(m). adjusted_(i) = min(1, max_{j<=i} (m - j + 1) p_(j)),
    then put back in the input order. Reject H_i when adjusted_i <= alpha; FWER <= alpha under any
    dependence. Reference: Holm (1979), "A simple sequentially rejective multiple test procedure",
    Scand. J. Statist. 6, 65-70.
    """
    p = _check_p_values(p_values)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ordered = np.take_along_axis(p, order, axis=-1)
    multipliers = np.arange(m, 0, -1, dtype=np.float64)
    stepped = np.minimum(np.maximum.accumulate(ordered * multipliers, axis=-1), 1.0)
    adjusted = np.empty_like(stepped)
    np.put_along_axis(adjusted, order, stepped, axis=-1)
    return adjusted


def benjamini_hochberg(p_values: npt.ArrayLike) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (q-values) along the last axis.

    adjusted_(i) = min_{j>=i} min(1, m p_(j) / j); reject H_i when adjusted_i <= q; FDR <= q m_0/m for
    independent or positively dependent tests. Reference: Benjamini & Hochberg (1995), JRSS B 57,
    289-300; computed by `scipy.stats.false_discovery_control(method="bh")`.
    """
    from scipy import stats as sps

    p = _check_p_values(p_values)
    return np.asarray(sps.false_discovery_control(p, axis=-1, method="bh"), dtype=np.float64)
