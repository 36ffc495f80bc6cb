"""Stable buckets, arm layouts, monotone ramps and namespaces (check C10 of STATISTICS.md)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from experiments.assignment import (
    BUCKETS,
    ArmLayout,
    NamespaceGate,
    bucket_of,
    percent_to_buckets,
    stable_hash64,
)

IDS = [f"user-{i}" for i in range(100_000)]


def test_hash_is_the_same_in_another_process() -> None:
    """Python's hash() is salted per process; ours must not be."""
    code = "from experiments.assignment import stable_hash64; print(stable_hash64('exp', 'user-42'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == stable_hash64("exp", "user-42")


def test_salt_and_unit_are_separated() -> None:
    assert stable_hash64("ab", "c") != stable_hash64("a", "bc")


def test_c10_buckets_are_uniform_over_100k_ids() -> None:
    counts = np.bincount([bucket_of("risk-ab", unit) for unit in IDS], minlength=BUCKETS)
    p_value = sps.chisquare(counts).pvalue
    assert p_value > 0.01


def test_different_salts_give_independent_buckets() -> None:
    a = np.array([bucket_of("exp-a", unit) for unit in IDS[:20_000]]) < BUCKETS // 2
    b = np.array([bucket_of("exp-b", unit) for unit in IDS[:20_000]]) < BUCKETS // 2
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    assert sps.chi2_contingency(table).pvalue > 0.001


def test_c10_ramp_from_5_to_100_percent_moves_no_unit_out() -> None:
    buckets = np.array([bucket_of("risk-canary", unit) for unit in IDS])
    previous = np.zeros(len(IDS), dtype=bool)
    for percent in (5, 10, 25, 50, 75, 100):
        in_candidate = buckets < percent_to_buckets(percent)
        assert not np.any(previous & ~in_candidate), "a unit left the candidate while the ramp rose"
        assert abs(in_candidate.mean() - percent / 100) < 0.01
        previous = in_candidate
    assert previous.all()


def test_uniform_split_over_three_arms_by_weight() -> None:
    layout = ArmLayout.build([("a", 50.0), ("b", 30.0), ("c", 20.0)])
    arms = [layout.arm_at(bucket_of("three-way", unit)) for unit in IDS]
    observed = [arms.count(name) for name in ("a", "b", "c")]
    expected = [0.5 * len(IDS), 0.3 * len(IDS), 0.2 * len(IDS)]
    assert sps.chisquare(observed, expected).pvalue > 0.01


def test_coverage_serves_the_start_of_each_span_and_keeps_shares() -> None:
    layout = ArmLayout.build([("a", 1.0), ("b", 1.0)], coverage_percent=20.0)
    assert layout.ends == (1000, 6000)
    assert layout.arm_at(999) == "a" and layout.arm_at(1000) is None
    assert layout.arm_at(5000) == "b" and layout.arm_at(6000) is None
    assert layout.shares() == {"a": 0.5, "b": 0.5}


def test_raising_coverage_keeps_every_unit_in_its_arm() -> None:
    buckets = [bucket_of("cov", unit) for unit in IDS[:20_000]]
    narrow = ArmLayout.build([("a", 1.0), ("b", 3.0)], coverage_percent=10.0)
    wide = ArmLayout.build([("a", 1.0), ("b", 3.0)], coverage_percent=60.0)
    moved = [b for b in buckets if narrow.arm_at(b) is not None and narrow.arm_at(b) != wide.arm_at(b)]
    assert moved == []


def test_zero_weight_arm_gets_nothing() -> None:
    layout = ArmLayout.build([("a", 0.0), ("b", 1.0)])
    assert {layout.arm_at(b) for b in range(0, BUCKETS, 7)} == {"b"}


def test_layout_refuses_bad_weights() -> None:
    with pytest.raises(ValueError):
        ArmLayout.build([("a", 0.0), ("b", 0.0)])
    with pytest.raises(ValueError):
        ArmLayout.build([("a", -1.0), ("b", 2.0)])


def test_percent_to_buckets_rounds_down_without_float_artefacts() -> None:
    assert percent_to_buckets(29.0) == 2900
    assert percent_to_buckets(0.5) == 50
    assert percent_to_buckets(100) == BUCKETS
    with pytest.raises(ValueError):
        percent_to_buckets(101)


def test_namespaces_make_experiments_mutually_exclusive() -> None:
    first = NamespaceGate("risk", 0, 5000)
    second = NamespaceGate("risk", 5000, 10_000)
    admitted_first = [first.admits(unit) for unit in IDS[:20_000]]
    admitted_second = [second.admits(unit) for unit in IDS[:20_000]]
    assert not any(a and b for a, b in zip(admitted_first, admitted_second, strict=True))
    assert all(a or b for a, b in zip(admitted_first, admitted_second, strict=True))
    assert abs(np.mean(admitted_first) - 0.5) < 0.02
