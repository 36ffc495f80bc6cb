"""Experiment config models: the documented shapes validate, mistakes are refused with a reason."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from experiments.config import (
    AbConfig,
    BlueGreenConfig,
    CanaryConfig,
    ExperimentConfig,
    ShadowConfig,
    experiment_clusters,
)

ADAPTER: TypeAdapter[Any] = TypeAdapter(ExperimentConfig)

AB = {
    "kind": "ab",
    "salt": "risk-ab",
    "unit": ["header:x-user-id", "cookie:turnout_uid", "jwt:sub", "query:uid"],
    "issue_cookie": True,
    "namespace": {"name": "risk", "range": [0, 5000]},
    "arms": {
        "control": {"cluster": "risk-v1", "weight": 50},
        "treatment": {"cluster": "risk-v2", "weight": 50},
    },
    "force_header": "X-Turnout-Force-Arm",
    "force_scope": "experiments:force",
    "metrics": ["latency", "error_rate", "feedback:conversion", "output:label", "latency_p99"],
    "affinity": False,
}
CANARY = {
    "kind": "canary",
    "baseline": {"cluster": "risk-v1"},
    "candidate": {"cluster": "risk-v2"},
    "steps": [{"percent": 1, "min_duration": "1m", "min_units": 100}, {"percent": 5}, {"percent": 100}],
    "guardrails": [
        {"metric": "error_rate", "max_increase": 0.01},
        {"metric": "latency_p99", "max_ratio": 1.2},
        {"metric": "shadow_disagreement", "max": 0.05},
        {"metric": "feedback:conversion", "min_ratio": 0.95},
    ],
    "alpha": 0.05,
    "interval": "10s",
}
BLUE_GREEN = {
    "kind": "blue_green",
    "active": "blue",
    "colors": {"blue": {"cluster": "risk-v1"}, "green": {"cluster": "risk-v2"}},
    "smoke": {
        "method": "POST",
        "path": "/v2/models/risk/infer",
        "body": {"inputs": []},
        "expect_status": 200,
    },
}
SHADOW = {
    "kind": "shadow",
    "primary": {"cluster": "risk-v1"},
    "mirrors": [{"cluster": "risk-v2", "fraction": 0.5}],
    "queue_size": 1000,
    "compare": {"tolerance": 1e-4},
}


def test_every_documented_kind_validates() -> None:
    ab, canary, blue_green, shadow = (
        ADAPTER.validate_python(raw) for raw in (AB, CANARY, BLUE_GREEN, SHADOW)
    )
    assert isinstance(ab, AbConfig) and ab.force_header == "x-turnout-force-arm" and ab.issues_cookie
    assert (
        isinstance(canary, CanaryConfig) and canary.steps[0].min_duration == 60.0 and canary.interval == 10.0
    )
    assert isinstance(blue_green, BlueGreenConfig)
    assert isinstance(shadow, ShadowConfig) and shadow.compare.tolerance == 1e-4
    assert experiment_clusters(shadow) == ["risk-v1", "risk-v2"]


def test_cookie_issuance_follows_the_sources_by_default() -> None:
    header_only = ADAPTER.validate_python({**AB, "unit": "header:x-user-id", "issue_cookie": None})
    assert header_only.unit == ["header:x-user-id"] and not header_only.issues_cookie


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**AB, "unit": ["body:uid"]}, "invalid unit source"),
        ({**AB, "unit": ["header:x-user-id"], "issue_cookie": True}, "needs a cookie"),
        ({**AB, "metrics": ["throughput"]}, "unknown metric"),
        ({**AB, "arms": {"only": {"cluster": "a"}}}, "at least 2"),
        (
            {**AB, "arms": {"a": {"cluster": "a", "weight": 0}, "b": {"cluster": "b", "weight": 0}}},
            "positive weight",
        ),
        ({**AB, "namespace": {"name": "n", "range": [5000, 5000]}}, "namespace range"),
        ({**AB, "colour": "blue"}, "Extra inputs"),
        ({**CANARY, "steps": [{"percent": 5}, {"percent": 5}]}, "must increase"),
        ({**CANARY, "guardrails": [{"metric": "error_rate"}]}, "exactly one"),
        ({**CANARY, "guardrails": [{"metric": "shadow_disagreement", "max_ratio": 2}]}, "takes a `max`"),
        ({**BLUE_GREEN, "active": "red"}, "not one of"),
        ({**SHADOW, "mirrors": [{"cluster": "a"}, {"cluster": "a"}]}, "distinct"),
        ({**SHADOW, "mirrors": [{"cluster": "b", "fraction": 0}]}, "greater than 0"),
    ],
)
def test_mistakes_are_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ADAPTER.validate_python(raw)


@pytest.mark.parametrize("weight", [float("inf"), 1e308])
def test_an_unbounded_arm_weight_is_refused_where_it_is_written(weight: float) -> None:
    raw = {**AB, "arms": {"control": {"cluster": "a", "weight": weight}, "treatment": {"cluster": "b"}}}
    with pytest.raises(ValidationError) as caught:
        ADAPTER.validate_python(raw)
    text = str(caught.value)
    assert "arms.control.weight" in text and "less than or equal to 1000000" in text
    assert "NaN" not in text


def test_a_pre_registered_mde_and_the_bayesian_mode_are_read() -> None:
    config = ADAPTER.validate_python({**AB, "mde": 0.05, "analysis": "bayesian"})
    assert isinstance(config, AbConfig) and config.mde == 0.05 and config.analysis == "bayesian"
    assert ADAPTER.validate_python(AB).analysis == "frequentist"
    with pytest.raises(ValidationError, match="mde"):
        ADAPTER.validate_python({**AB, "mde": 0})


def test_winsorisation_takes_latency_or_feedback_at_a_percentile_in_range() -> None:
    config = ADAPTER.validate_python({**AB, "winsorize": {"feedback:conversion": 99}})
    assert config.winsorize == {"feedback:conversion": 99.0}
    with pytest.raises(ValidationError, match="only latency and feedback"):
        ADAPTER.validate_python({**AB, "winsorize": {"error_rate": 99}})
    with pytest.raises(ValidationError, match=r"\[50, 100\)"):
        ADAPTER.validate_python({**AB, "winsorize": {"latency": 100}})
