"""How fast the canary controller rolls back a bad candidate, and that it leaves a good one alone.

The real `CanaryController` decides on seeded simulated traffic (`canary_sim`), with the demo's
steps (10, 25, 50, 100 %; 100 units and 15 s each) and two guardrails (error rate +1 point, and
mean latency x1.5 where the demo watches p99: the simulated store keeps no latency histogram, and
Holm counts two guardrails either way). A candidate at 2 % errors against 0 % is one point past its
limit: before the rollout was one chained test with score-test variances, the same simulation needed
a median of 2,496 candidate requests (2,670 measured on a live gateway); the issue asks for at most
half of 1,738.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.config import CanaryConfig
from experiments.splits.base import SplitStatus
from tests.experiments.canary_sim import run_rollout

ALPHA = 0.05


def _config() -> CanaryConfig:
    return CanaryConfig.model_validate(
        {
            "kind": "canary",
            "baseline": {"cluster": "v1"},
            "candidate": {"cluster": "v2"},
            "steps": [
                {"percent": 10, "min_duration": "15s", "min_units": 100},
                {"percent": 25, "min_duration": "15s", "min_units": 100},
                {"percent": 50, "min_duration": "15s", "min_units": 100},
                {"percent": 100},
            ],
            "guardrails": [
                {"metric": "error_rate", "max_increase": 0.01},
                {"metric": "latency", "max_ratio": 1.5},
            ],
            "interval": "2s",
            "alpha": ALPHA,
        }
    )


async def test_a_candidate_one_point_past_its_error_limit_is_rolled_back_within_half_the_requests() -> None:
    rng = np.random.default_rng(2026)
    rates = {"baseline": 0.0, "candidate": 0.02}
    runs = [await run_rollout(_config(), rng, error_rate=rates, units_per_tick=200) for _ in range(150)]
    assert all(run.status is SplitStatus.ROLLED_BACK for run in runs)
    median = float(np.median([run.candidate_requests for run in runs]))
    assert median <= 1738 / 2, median


async def test_good_candidates_are_promoted_and_rarely_rolled_back() -> None:
    rng = np.random.default_rng(7)
    runs = 60
    rates = {"baseline": 0.005, "candidate": 0.005}
    ends = [await run_rollout(_config(), rng, error_rate=rates, units_per_tick=200) for _ in range(runs)]
    rolled_back = sum(end.status is SplitStatus.ROLLED_BACK for end in ends)
    assert rolled_back <= runs * (ALPHA + 3.0 * math.sqrt(ALPHA * (1.0 - ALPHA) / runs))
    assert sum(end.status is SplitStatus.PROMOTED for end in ends) == runs - rolled_back
