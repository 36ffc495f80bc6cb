"""Heterogeneity of an effect across segments: Cochran's Q.

With per-segment estimates d_i and standard errors s_i (independent segments), weights w_i = 1/s_i^2,
the pooled effect d = sum w_i d_i / sum w_i and
    Q = sum w_i (d_i - d)^2  ~  chi-square with k - 1 degrees of freedom
when every segment has the same effect. A small p says the effect differs between segments; a large
one does not say it is the same (Q has little power with few segments).
Reference: Cochran, "The combination of estimates from different experiments", Biometrics 1954;
Higgins & Thompson, "Quantifying heterogeneity in a meta-analysis", Statistics in Medicine 2002.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import as_floats


@dataclass(frozen=True, slots=True)
class HeterogeneityResult:
    q: float
    degrees_of_freedom: int
    p_value: float
    pooled: float
    """The inverse-variance weighted mean effect."""


def cochran_q(estimates: npt.ArrayLike, standard_errors: npt.ArrayLike) -> HeterogeneityResult | None:
    """Cochran's Q over the segments with a finite estimate and a positive standard error; None
    with fewer than two such segments."""
    from scipy import stats

    d, se = as_floats(estimates), as_floats(standard_errors)
    usable = np.isfinite(d) & np.isfinite(se) & (se > 0.0)
    if int(usable.sum()) < 2:
        return None
    d, w = d[usable], 1.0 / se[usable] ** 2
    pooled = float((w * d).sum() / w.sum())
    q = float((w * (d - pooled) ** 2).sum())
    df = int(d.size - 1)
    return HeterogeneityResult(q, df, float(stats.chi2.sf(q, df)), pooled)
