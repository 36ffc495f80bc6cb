"""Suggestions are made only when one candidate is clearly the closest."""

from __future__ import annotations

from gateway.config.suggest import closest, did_you_mean


def test_closest() -> None:
    assert closest("balancr", ["balancer", "endpoints", "health"]) == "balancer"
    assert closest("Balancer", ["balancer"]) == "balancer"
    assert closest("zzz", ["balancer", "endpoints"]) is None
    assert closest("x", []) is None


def test_a_tie_is_not_a_suggestion() -> None:
    assert closest("fraud-v3", ["fraud-v1", "fraud-v2"]) is None


def test_did_you_mean() -> None:
    assert did_you_mean("prot", ["port", "host"]) == " (did you mean 'port'?)"
    assert did_you_mean("qqq", ["port"]) == ""
