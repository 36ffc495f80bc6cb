"""Array types and the small helpers every statistics module shares.

Every public function accepts scalars or numpy arrays (many simulated runs at once) and broadcasts
them. Results echo that choice: a field is a Python ``float`` when the inputs were scalars and an
array of the broadcast shape otherwise, so a report reads plain numbers and a simulation reads arrays
without a second code path.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# A statistic: a float for scalar inputs, an array for vectorised inputs.
Stat = float | FloatArray
BoolStat = bool | BoolArray

# "greater" tests B - A > null (treatment higher), "less" tests B - A < null.
Alternative = Literal["two-sided", "greater", "less"]
ALTERNATIVES: tuple[Alternative, ...] = ("two-sided", "greater", "less")


def as_floats(values: npt.ArrayLike) -> FloatArray:
    """The input as a float64 array (no copy when it already is one)."""
    return np.asarray(values, dtype=np.float64)


def to_stat(values: npt.ArrayLike) -> Stat:
    """A 0-d result as a plain float, anything larger as a float64 array."""
    array = as_floats(values)
    return float(array) if array.ndim == 0 else array


def to_bool_stat(values: npt.ArrayLike) -> BoolStat:
    """A 0-d boolean result as a plain bool, anything larger as a bool array."""
    array = np.asarray(values, dtype=np.bool_)
    return bool(array) if array.ndim == 0 else array


def check_alpha(alpha: float) -> None:
    """Reject significance levels outside (0, 1): they make every formula below meaningless."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def check_alternative(alternative: str) -> None:
    """Reject a misspelt alternative early instead of silently running a two-sided test."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")


def critical_value(alpha: float, alternative: Alternative) -> float:
    """z such that a normal interval with half-width z*se has coverage 1 - alpha for `alternative`."""
    from scipy import stats as sps

    check_alpha(alpha)
    check_alternative(alternative)
    tail = alpha / 2.0 if alternative == "two-sided" else alpha
    return float(sps.norm.isf(tail))
