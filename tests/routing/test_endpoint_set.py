from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from routing.balancers.consistent_hash import ConsistentHashFactory
from routing.balancers.round_robin import RoundRobinFactory
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def members(count: int) -> list[Endpoint]:
    return [Endpoint(host="10.2.0.1", port=9000 + i, available_since=0.0) for i in range(count)]


def make_set(eps: list[Endpoint], clock: FakeClock, **options: Any) -> EndpointSet:
    return EndpointSet("c", eps, RoundRobinFactory(random.Random(1)), clock=clock, **options)


def picked(endpoint_set: EndpointSet, count: int = 40) -> set[Endpoint | None]:
    return {endpoint_set.pick(None) for _ in range(count)}


def test_picks_among_available_endpoints_only() -> None:
    clock = FakeClock()
    eps = members(4)
    eps[1].active_healthy = False
    cluster = make_set(eps, clock)
    assert picked(cluster) == {eps[0], eps[2], eps[3]}
    assert cluster.eligible == (eps[0], eps[2], eps[3])
    assert not cluster.in_panic


def test_empty_set_picks_nothing() -> None:
    assert make_set([], FakeClock()).pick(None) is None


def test_panic_balances_over_all_endpoints_below_the_threshold() -> None:
    clock = FakeClock()
    eps = members(4)
    cluster = make_set(eps, clock, panic_threshold_percent=50)
    for ep in eps[:3]:
        ep.active_healthy = False
    cluster.refresh()
    assert cluster.in_panic  # 1 of 4 available = 25% < 50%
    assert picked(cluster) == set(eps)


def test_exactly_at_the_threshold_is_not_panic() -> None:
    clock = FakeClock()
    eps = members(4)
    cluster = make_set(eps, clock, panic_threshold_percent=50)
    eps[0].active_healthy = eps[1].active_healthy = False
    cluster.refresh()
    assert not cluster.in_panic
    assert picked(cluster) == {eps[2], eps[3]}


def test_panic_leaves_drained_endpoints_alone() -> None:
    clock = FakeClock()
    eps = members(3)
    cluster = make_set(eps, clock)
    eps[0].active_healthy = eps[1].active_healthy = False
    cluster.drain(eps[2].address)
    assert cluster.in_panic
    assert picked(cluster) == {eps[0], eps[1]}


def test_no_available_endpoint_and_no_panic_gives_none() -> None:
    clock = FakeClock()
    eps = members(2)
    cluster = make_set(eps, clock, panic_threshold_percent=0)
    for ep in eps:
        ep.active_healthy = False
    cluster.refresh()
    assert cluster.pick(None) is None
    assert not cluster.in_panic


def test_drain_and_undrain() -> None:
    clock = FakeClock()
    eps = members(3)
    cluster = make_set(eps, clock)
    assert cluster.drain(eps[0].address)
    assert picked(cluster) == {eps[1], eps[2]}
    assert cluster.undrain(eps[0].address)
    assert picked(cluster) == set(eps)
    assert not cluster.drain("10.9.9.9:1")


def test_add_and_remove_members() -> None:
    clock = FakeClock()
    eps = members(2)
    cluster = make_set(eps, clock)
    version = cluster.version
    extra = Endpoint(host="10.2.0.2", port=9000)
    cluster.add(extra)
    assert picked(cluster) == {*eps, extra}
    assert extra.available_since == clock.now
    with pytest.raises(ValueError, match="already a member"):
        cluster.add(Endpoint(host="10.2.0.2", port=9000))
    in_flight = cluster.pick(None)
    assert in_flight is not None
    cluster.on_start(in_flight)
    assert cluster.remove(in_flight.address) is in_flight
    assert in_flight not in picked(cluster)
    cluster.on_finish(in_flight)  # the removed endpoint still finishes its request
    assert in_flight.inflight == 0
    assert cluster.remove("10.9.9.9:1") is None
    assert cluster.version == version + 2


def test_replace_all_keeps_state_of_staying_addresses() -> None:
    clock = FakeClock()
    eps = members(3)
    eps[0].inflight = 4
    eps[0].ewma_latency = 0.2
    eps[0].active_healthy = False
    cluster = make_set(eps, clock)
    fresh = [Endpoint(host="10.2.0.1", port=9000, weight=5), Endpoint(host="10.2.0.3", port=9000)]
    cluster.replace_all(fresh)
    kept = cluster.get("10.2.0.1:9000")
    assert kept is eps[0]
    assert (kept.inflight, kept.ewma_latency, kept.active_healthy, kept.weight) == (4, 0.2, False, 5)
    assert [ep.address for ep in cluster.endpoints] == ["10.2.0.1:9000", "10.2.0.3:9000"]
    assert cluster.get("10.2.0.3:9000") is fresh[1]
    assert fresh[1].available_since == clock.now


def test_adopt_state_from_shares_endpoint_objects_with_the_old_set() -> None:
    clock = FakeClock()
    old_eps = members(2)
    old = make_set(old_eps, clock)
    old.on_start(old_eps[0])
    old_eps[0].ejection_count = 2
    new_eps = [Endpoint(host="10.2.0.1", port=9000, weight=3), Endpoint(host="10.2.0.7", port=9000)]
    new = make_set(new_eps, clock)
    new.adopt_state_from(old)
    adopted = new.get(old_eps[0].address)
    assert adopted is old_eps[0]
    assert adopted.weight == 3
    assert adopted.ejection_count == 2
    old.on_finish(old_eps[0])  # a request from before the reload ends on the shared object
    assert adopted.inflight == 0
    assert new.get("10.2.0.7:9000") is new_eps[1]
    assert old_eps[0] in picked(new)


def test_data_path_callbacks() -> None:
    clock = FakeClock()
    eps = members(1)
    cluster = make_set(eps, clock)
    ep = eps[0]
    cluster.on_start(ep)
    cluster.on_failure(ep, clock.now)
    cluster.on_finish(ep)
    cluster.on_start(ep)
    cluster.on_success(ep, 0.05, clock.now)
    cluster.on_load_report(ep, 3, 7)
    assert (ep.inflight, ep.total_requests, ep.total_failures, ep.consecutive_failures) == (1, 2, 1, 0)
    assert (ep.queue_depth, ep.reported_inflight, ep.ewma_latency) == (3, 7, 0.05)


def test_snapshot_reports_state() -> None:
    clock = FakeClock()
    eps = members(2)
    cluster = make_set(eps, clock)
    eps[0].ejected_until = clock.now + 4.0
    eps[0].ejection_count = 1
    eps[1].ewma_latency = 0.025
    cluster.drain(eps[1].address)
    first, second = cluster.snapshot()
    assert first["address"] == "10.2.0.1:9000"
    assert (first["ejected"], first["ejected_seconds_left"], first["ejection_count"]) == (True, 4.0, 1)
    assert first["available"] is False
    assert second["drained"] is True
    assert second["ewma_ms"] == 25.0
    assert set(first) >= {
        "weight",
        "healthy",
        "inflight",
        "queue_depth",
        "total_requests",
        "total_failures",
    }


def test_set_active_health_refreshes_and_restarts_slow_start() -> None:
    clock = FakeClock()
    eps = members(2)
    cluster = make_set(eps, clock)
    cluster.set_active_health(eps[0], False)
    assert picked(cluster) == {eps[1]}
    clock.now += 5
    cluster.set_active_health(eps[0], True)
    assert eps[0].available_since == clock.now
    assert picked(cluster) == set(eps)


def test_slow_start_needs_a_weighting_balancer() -> None:
    with pytest.raises(ValueError, match="slow start"):
        EndpointSet("c", members(2), ConsistentHashFactory(key="client_ip"), slow_start=10.0)


def test_ipv6_addresses_are_bracketed() -> None:
    assert Endpoint(host="::1", port=80).address == "[::1]:80"


def test_round_robin_spreads_evenly_through_the_set() -> None:
    clock = FakeClock()
    eps = members(3)
    cluster = make_set(eps, clock)
    seen = Counter(id(cluster.pick(None)) for _ in range(300))
    assert sorted(seen.values()) == [100, 100, 100]


def test_a_pick_avoids_the_endpoint_a_retry_failed_on_unless_it_is_alone() -> None:
    eps = members(3)
    cluster = make_set(eps, FakeClock())
    assert eps[0] in picked(cluster, 30)  # round robin comes back to it every third pick
    assert {cluster.pick(None, avoid=eps[0]) for _ in range(30)} == {eps[1], eps[2]}
    alone = make_set(members(1), FakeClock())
    only = alone.pick(None)
    assert only is not None and alone.pick(None, avoid=only) is only
