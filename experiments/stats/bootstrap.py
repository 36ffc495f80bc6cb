"""Bootstrap interval for a difference of quantiles, resampling units rather than requests.

Requests of one user share that user's device, region and model inputs, so their latencies are
correlated. Resampling requests one by one pretends they are independent and gives intervals that
are too narrow; resampling whole units keeps each unit's requests together (the cluster bootstrap).
Drawing n units with replacement gives each unit a multiplicity (how often it was drawn), so one
resample is a weighted quantile over the original, once-sorted observations: no copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.stats._arrays import FloatArray, IntArray, as_floats, check_alpha

# Cells of the (resamples x observations) weight matrix handled at once: ~32 MB per int64 array,
# which keeps memory flat however large the arms are while still amortising numpy's per-call overhead.
CHUNK_CELLS = 4_000_000


@dataclass(frozen=True, slots=True)
class BootstrapInterval:
    """Percentile bootstrap interval for quantile_B - quantile_A; `standard_error` is the resamples' sd."""

    quantile: float
    estimate: float
    ci_low: float
    ci_high: float
    standard_error: float
    n_resamples: int
    n_units_control: int
    n_units_treatment: int
    alpha: float


@dataclass(frozen=True, slots=True)
class _Arm:
    ordered: FloatArray  # observations sorted ascending
    units: IntArray  # unit code (0..n_units-1) of each sorted observation
    n_units: int


def units_from_groups(groups: Sequence[npt.ArrayLike]) -> tuple[FloatArray, IntArray]:
    """Flatten per-unit observation arrays into (values, unit_ids), the form the bootstrap takes."""
    arrays = [np.atleast_1d(as_floats(group)).ravel() for group in groups]
    values = np.concatenate(arrays) if arrays else np.empty(0)
    unit_ids = np.repeat(np.arange(len(arrays), dtype=np.int64), [a.size for a in arrays])
    return values, unit_ids


def _arm(values: npt.ArrayLike, unit_ids: npt.ArrayLike | None) -> _Arm:
    data = as_floats(values).ravel()
    if data.size == 0:
        raise ValueError("each arm needs observations")
    if unit_ids is None:
        codes = np.arange(data.size, dtype=np.int64)
    else:
        ids = np.asarray(unit_ids).ravel()
        if ids.size != data.size:
            raise ValueError("unit_ids must give one unit per observation")
        codes = np.unique(ids, return_inverse=True)[1].astype(np.int64).ravel()
    order = np.argsort(data, kind="stable")
    return _Arm(data[order], codes[order], int(codes.max()) + 1)


def _weighted_quantile(arm: _Arm, multiplicities: IntArray, q: float) -> FloatArray:
    """Inverted-CDF q-quantile per row of unit multiplicities (rows: resamples)."""
    weights = multiplicities[:, arm.units]
    cumulative = np.cumsum(weights, axis=1)
    threshold = q * cumulative[:, -1:]
    return np.asarray(arm.ordered[np.argmax(cumulative >= threshold, axis=1)], dtype=np.float64)


def _multiplicities(n_units: int, size: int, rng: np.random.Generator) -> IntArray:
    """How often each unit is drawn in each of `size` resamples of n_units draws with replacement.

    Counting uniform draws with one flat bincount is several times faster than numpy's multinomial,
    which loops over the units.
    """
    draws = rng.integers(0, n_units, size=(size, n_units)) + n_units * np.arange(size)[:, np.newaxis]
    return np.bincount(draws.ravel(), minlength=size * n_units).reshape(size, n_units).astype(np.int64)


def _resampled_quantiles(arm: _Arm, q: float, n_resamples: int, rng: np.random.Generator) -> FloatArray:
    chunk = max(1, CHUNK_CELLS // arm.ordered.size)
    parts = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        parts.append(_weighted_quantile(arm, _multiplicities(arm.n_units, size, rng), q))
    return np.concatenate(parts)


def bootstrap_quantile_difference(
    control: npt.ArrayLike,
    treatment: npt.ArrayLike,
    q: float,
    *,
    control_unit_ids: npt.ArrayLike | None = None,
    treatment_unit_ids: npt.ArrayLike | None = None,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> BootstrapInterval:
    """Percentile bootstrap of quantile_B - quantile_A over units (each arm resampled separately).

    Each resample draws every arm's units with replacement (n_units draws), keeps all requests of a
    drawn unit, and takes the inverted-CDF q-quantile; the interval is the alpha/2 and 1 - alpha/2
    percentiles of the resampled differences. Without unit ids each observation is its own unit.
    Reference: Efron & Tibshirani, An Introduction to the Bootstrap (1993), ch. 13 (percentile
    interval); Davison & Hinkley (1997), section 3.8 (resampling clusters). Seeded: same inputs and
    seed give the same interval.
    """
    check_alpha(alpha)
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must lie in (0, 1), got {q}")
    if n_resamples < 2:
        raise ValueError("the bootstrap needs at least 2 resamples")
    arm_a, arm_b = _arm(control, control_unit_ids), _arm(treatment, treatment_unit_ids)
    rng = np.random.default_rng(seed)
    differences = _resampled_quantiles(arm_b, q, n_resamples, rng) - _resampled_quantiles(
        arm_a, q, n_resamples, rng
    )
    estimate = float(np.quantile(arm_b.ordered, q, method="inverted_cdf")) - float(
        np.quantile(arm_a.ordered, q, method="inverted_cdf")
    )
    low, high = np.quantile(differences, [alpha / 2.0, 1.0 - alpha / 2.0])
    return BootstrapInterval(
        quantile=q,
        estimate=estimate,
        ci_low=float(low),
        ci_high=float(high),
        standard_error=float(np.std(differences, ddof=1)),
        n_resamples=n_resamples,
        n_units_control=arm_a.n_units,
        n_units_treatment=arm_b.n_units,
        alpha=alpha,
    )
