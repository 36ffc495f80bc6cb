from __future__ import annotations

import random
from collections import Counter

from routing.balancers.base import SingleEndpoint
from routing.balancers.peak_ewma import DEFAULT_RTT_S, PeakEwma, PeakEwmaFactory
from routing.endpoints import Endpoint


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def members(count: int) -> list[Endpoint]:
    return [Endpoint(host="10.0.0.3", port=9000 + i) for i in range(count)]


def test_avoids_the_slow_endpoint() -> None:
    clock = FakeClock()
    eps = members(3)
    for ep, latency in zip(eps, [0.010, 0.012, 0.500], strict=True):
        ep.observe_latency(latency, clock.now)
    balancer = PeakEwmaFactory(rng=random.Random(1), clock=clock)(eps)
    seen = Counter(id(balancer.pick(None)) for _ in range(3000))
    assert seen[id(eps[2])] == 0
    assert seen[id(eps[0])] > seen[id(eps[1])]


def test_cost_grows_with_requests_in_flight() -> None:
    clock = FakeClock()
    fast, slow = members(2)
    fast.observe_latency(0.010, clock.now)
    slow.observe_latency(0.030, clock.now)
    fast.inflight = 5  # 0.010 x 6 = 0.060 against 0.030 x 1
    balancer = PeakEwmaFactory(rng=random.Random(2), clock=clock)([fast, slow])
    assert {balancer.pick(None) for _ in range(50)} == {slow}


def test_unobserved_endpoint_is_tried_before_a_slower_one() -> None:
    clock = FakeClock()
    observed, fresh = members(2)
    observed.observe_latency(DEFAULT_RTT_S * 2, clock.now)
    balancer = PeakEwmaFactory(rng=random.Random(3), clock=clock)([observed, fresh])
    assert balancer.pick(None) is fresh


def test_unobserved_endpoint_does_not_beat_a_fast_one() -> None:
    clock = FakeClock()
    observed, fresh = members(2)
    observed.observe_latency(DEFAULT_RTT_S / 10, clock.now)
    balancer = PeakEwmaFactory(rng=random.Random(4), clock=clock)([observed, fresh])
    assert balancer.pick(None) is observed


def test_an_avoided_endpoint_is_retried_once_its_estimate_decays() -> None:
    clock = FakeClock()
    steady, spiked = members(2)
    steady.observe_latency(0.020, clock.now)
    spiked.observe_latency(2.0, clock.now)
    balancer = PeakEwmaFactory(decay=10.0, rng=random.Random(5), clock=clock)([steady, spiked])
    assert balancer.pick(None) is steady
    clock.now += 60.0  # 2.0 x e^-6 = 0.005, while the steady endpoint keeps answering in 20 ms
    steady.observe_latency(0.020, clock.now)
    assert balancer.pick(None) is spiked


def test_costs_are_computed_at_the_clock_time() -> None:
    clock = FakeClock()
    a, b = members(2)
    a.observe_latency(0.1, clock.now)
    balancer = PeakEwma([a, b], random.Random(6), default_rtt=0.03, decay=10.0, clock=clock)
    assert balancer.cost(a, clock.now) == 0.1
    assert balancer.cost(b, clock.now) == 0.03
    b.inflight = 2
    assert abs(balancer.cost(b, clock.now) - 0.09) < 1e-12


def test_single_endpoint() -> None:
    assert isinstance(PeakEwmaFactory()(members(1)), SingleEndpoint)
