"""Drift statistics between a reference distribution and a current one, as pure functions.

Every function takes two histograms over the same bins (counts, not yet normalised) and returns a
float; none does I/O or keeps state. Empty bins are smoothed by `EPSILON` where a logarithm needs it.
"""

from __future__ import annotations

from typing import Final

import numpy as np

# A share of 1e-4 stands in for an empty bin: small enough not to move a PSI computed on thousands of
# rows, large enough that one row in a bin the reference never saw adds a bounded ln(share/1e-4) term
# instead of infinity.
EPSILON: Final = 1e-4


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts -> proportions summing to 1 (all zeros stay zeros)."""
    total = float(counts.sum())
    return counts / total if total > 0 else np.zeros(len(counts), dtype=np.float64)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index: PSI = sum_i (c_i - r_i) * ln(c_i / r_i), over bin shares c and r.

    The symmetrised Kullback-Leibler divergence (Jeffreys) of the binned distributions. Rules of thumb
    from credit scoring (Siddiqi, "Credit Risk Scorecards", 2006; Yurdakul, "Statistical properties
    of the population stability index", 2018): < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a
    major one. With no drift, n current rows and N reference rows over B bins, PSI is about
    (1/n + 1/N) * chi-square(B - 1) (Yurdakul 2018), which sizes the minimum sample.
    """
    r = np.maximum(shares(reference), EPSILON)
    c = np.maximum(shares(current), EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def ks(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic on binned data: D = max_k |C_c(k) - C_r(k)|.

    C are the cumulative shares at each bin's upper edge (Kolmogorov 1933; Smirnov 1948). Binning can
    only hide differences inside a bin, so this is a lower bound on the statistic of the raw samples,
    within one bin's share (1/B for quantile bins) of it.
    """
    return float(np.max(np.abs(np.cumsum(shares(current)) - np.cumsum(shares(reference))), initial=0.0))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2: sqrt(JSD), JSD = (KL(r||m) + KL(c||m)) / 2, m = (r + c) / 2.

    Bounded in [0, 1] and a metric (Endres and Schindelin, IEEE Trans. Inf. Theory 49(7), 2003);
    empty bins need no smoothing since m > 0 wherever r or c is.
    """
    r = shares(reference)
    c = shares(current)
    if not r.any() or not c.any():
        return 0.0
    m = (r + c) / 2
    divergence = (_kl(r, m) + _kl(c, m)) / 2
    return float(np.sqrt(max(divergence, 0.0)))


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats of each row of class probabilities: H = -sum_k p_k ln p_k."""
    clipped = np.clip(probabilities, 1e-12, 1.0)
    return np.asarray(-np.sum(probabilities * np.log(clipped), axis=-1))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / q[mask])))
