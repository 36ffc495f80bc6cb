"""Shared Wald inference: z, p-values and intervals for each alternative."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import normal_inference


def test_two_sided_wald_test_by_hand() -> None:
    result = normal_inference(0.3, 0.1)
    assert result.statistic == pytest.approx(3.0)
    assert result.p_value == pytest.approx(2 * sps.norm.sf(3.0))
    assert result.ci_low == pytest.approx(0.3 - 1.959963984540054 * 0.1)
    assert result.ci_high == pytest.approx(0.3 + 1.959963984540054 * 0.1)


def test_one_sided_tests_use_one_tail_and_an_open_interval() -> None:
    greater = normal_inference(0.3, 0.1, alternative="greater")
    assert greater.p_value == pytest.approx(sps.norm.sf(3.0))
    assert greater.ci_low == pytest.approx(0.3 - 1.6448536269514722 * 0.1)
    assert greater.ci_high == np.inf
    less = normal_inference(0.3, 0.1, alternative="less")
    assert less.p_value == pytest.approx(sps.norm.cdf(3.0))
    assert less.ci_low == -np.inf


def test_null_value_shifts_the_statistic_and_zero_se_is_handled() -> None:
    assert normal_inference(0.3, 0.1, null=0.1).statistic == pytest.approx(2.0)
    assert normal_inference(0.0, 0.0).p_value == 1.0
    assert normal_inference(0.2, 0.0).p_value == 0.0
    with pytest.raises(ValueError):
        normal_inference(0.0, -1.0)
    with pytest.raises(ValueError):
        normal_inference(0.0, 1.0, alternative="sideways")  # type: ignore[arg-type]


def test_arrays_broadcast() -> None:
    result = normal_inference(np.array([0.0, 0.1, 0.2]), 0.1)
    assert isinstance(result.p_value, np.ndarray)
    assert result.p_value.shape == (3,)
    assert np.all(np.diff(result.p_value) < 0)
