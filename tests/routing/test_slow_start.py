from __future__ import annotations

import random
from collections import Counter

import pytest

from routing.balancers import make_balancer_factory
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint
from routing.slow_start import SlowStart

WINDOW = 10.0
PICKS = 2000


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now


def newcomer_share(kind: str, elapsed: float, aggression: float = 1.0) -> float:
    """The share of picks a newcomer gets `elapsed` seconds into its window, beside a warm endpoint."""
    clock = FakeClock()
    warm = Endpoint(host="10.3.0.1", port=9000, available_since=0.0)
    # Smooth weighted round robin is deterministic and takes no random source.
    options = {} if kind == "weighted_round_robin" else {"rng": random.Random(5)}
    cluster = EndpointSet(
        "c",
        [warm],
        make_balancer_factory(kind, **options),
        slow_start=WINDOW,
        slow_start_aggression=aggression,
        clock=clock,
    )
    newcomer = Endpoint(host="10.3.0.2", port=9000)
    cluster.add(newcomer)
    clock.now += elapsed
    cluster.refresh()
    seen = Counter(id(cluster.pick(None)) for _ in range(PICKS))
    return seen[id(newcomer)] / PICKS


@pytest.mark.parametrize("kind", ["round_robin", "weighted_round_robin", "random", "least_request"])
def test_newcomer_ramps_up_over_the_window(kind: str) -> None:
    shares = [newcomer_share(kind, t) for t in (0.0, 2.5, 5.0, WINDOW)]
    # Weights 0.1 (the floor), 0.25, 0.5, then the full 1 beside the warm endpoint's 1.
    expected = [0.1 / 1.1, 0.25 / 1.25, 0.5 / 1.5, 0.5]
    for share, want in zip(shares, expected, strict=True):
        assert abs(share - want) < 0.04, (kind, shares)


def test_aggression_bends_the_ramp() -> None:
    # (0.25) ** (1 / 2) = 0.5: a higher aggression gives more traffic early in the window.
    assert abs(newcomer_share("weighted_round_robin", 2.5, aggression=2.0) - 0.5 / 1.5) < 0.02


def test_picks_refresh_the_ramp_on_their_own_and_stop_after_the_window() -> None:
    clock = FakeClock()
    warm = Endpoint(host="10.3.0.1", port=9000, available_since=0.0)
    factory = make_balancer_factory("round_robin", rng=random.Random(6))
    cluster = EndpointSet("c", [warm], factory, slow_start=WINDOW, clock=clock)
    newcomer = Endpoint(host="10.3.0.2", port=9000)
    cluster.add(newcomer)

    def share() -> float:
        seen = Counter(id(cluster.pick(None)) for _ in range(PICKS))
        return seen[id(newcomer)] / PICKS

    early = share()
    clock.now += WINDOW / 2  # no explicit refresh: the set's own deadline triggers it
    middle = share()
    clock.now += WINDOW
    late = share()
    assert early < middle < late
    assert late == 0.5
    calls = clock.calls
    share()
    assert clock.calls == calls  # once every ramp is over, picks do not even read the clock


def test_without_slow_start_a_newcomer_gets_its_full_share_at_once() -> None:
    clock = FakeClock()
    warm = Endpoint(host="10.3.0.1", port=9000, available_since=0.0)
    cluster = EndpointSet("c", [warm], make_balancer_factory("round_robin"), clock=clock)
    newcomer = Endpoint(host="10.3.0.2", port=9000)
    cluster.add(newcomer)
    seen = Counter(id(cluster.pick(None)) for _ in range(100))
    assert seen[id(newcomer)] == 50


def test_ramp_formula() -> None:
    ramp = SlowStart(window=10.0, aggression=2.0, min_weight_percent=20.0)
    eps = [Endpoint(host="10.3.0.9", port=9000 + i, weight=4, available_since=100.0) for i in range(2)]
    eps[1].available_since = 0.0  # long warm
    weights = ramp.weights(eps, now=102.5)
    assert weights == [4 * 0.5, 4.0]  # (0.25) ** (1 / 2) = 0.5
    assert ramp.weights(eps, now=100.0) == [4 * 0.2, 4.0]  # the floor
    assert ramp.weights(eps, now=110.0) is None
    assert ramp.step == 1.0
    with pytest.raises(ValueError):
        SlowStart(window=0.0)
