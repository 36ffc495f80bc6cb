from __future__ import annotations

import random

import pytest

from routing.balancers.round_robin import RoundRobinFactory
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint
from routing.health.outlier import OutlierDetector


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cluster_of(count: int, clock: FakeClock, detector: OutlierDetector) -> tuple[EndpointSet, list[Endpoint]]:
    eps = [Endpoint(host="10.4.0.1", port=9000 + i) for i in range(count)]
    cluster = EndpointSet(
        "c",
        eps,
        RoundRobinFactory(random.Random(1)),
        outlier=detector,
        panic_threshold_percent=0,
        clock=clock,
    )
    return cluster, eps


def fail(cluster: EndpointSet, endpoint: Endpoint, times: int, now: float) -> None:
    for _ in range(times):
        cluster.on_start(endpoint)
        cluster.on_failure(endpoint, now)
        cluster.on_finish(endpoint)


def picked(cluster: EndpointSet) -> set[Endpoint | None]:
    return {cluster.pick(None) for _ in range(30)}


def test_ejects_after_consecutive_failures_only() -> None:
    clock = FakeClock()
    cluster, eps = cluster_of(4, clock, OutlierDetector(consecutive_failures=3, base_ejection_time=5.0))
    fail(cluster, eps[0], 2, clock.now)
    cluster.on_success(eps[0], 0.01, clock.now)  # a success resets the streak
    fail(cluster, eps[0], 2, clock.now)
    assert eps[0] in picked(cluster)
    fail(cluster, eps[0], 1, clock.now)
    assert eps[0].ejected_until == clock.now + 5.0
    assert eps[0] not in picked(cluster)


def test_readmitted_when_the_ejection_ends_without_explicit_refresh() -> None:
    clock = FakeClock()
    cluster, eps = cluster_of(4, clock, OutlierDetector(consecutive_failures=1, base_ejection_time=5.0))
    fail(cluster, eps[1], 1, clock.now)
    clock.now += 4.9
    assert eps[1] not in picked(cluster)
    clock.now += 0.1
    assert eps[1] in picked(cluster)


def test_ejection_time_grows_with_each_ejection_up_to_the_cap() -> None:
    clock = FakeClock()
    detector = OutlierDetector(consecutive_failures=1, base_ejection_time=5.0, max_ejection_time=12.0)
    cluster, eps = cluster_of(4, clock, detector)
    durations = []
    for _ in range(4):
        fail(cluster, eps[0], 1, clock.now)
        durations.append(eps[0].ejected_until - clock.now)
        clock.now = eps[0].ejected_until
    assert durations == [5.0, 10.0, 12.0, 12.0]
    assert eps[0].ejection_count == 4


def test_ejection_count_is_forgiven_after_a_long_good_spell() -> None:
    clock = FakeClock()
    detector = OutlierDetector(consecutive_failures=1, base_ejection_time=5.0, max_ejection_time=20.0)
    cluster, eps = cluster_of(4, clock, detector)
    fail(cluster, eps[0], 1, clock.now)
    clock.now = eps[0].ejected_until + 20.0
    fail(cluster, eps[0], 1, clock.now)
    assert eps[0].ejected_until - clock.now == 5.0
    assert eps[0].ejection_count == 1


def test_never_ejects_beyond_max_ejection_percent() -> None:
    clock = FakeClock()
    detector = OutlierDetector(consecutive_failures=1, max_ejection_percent=50)
    cluster, eps = cluster_of(4, clock, detector)
    for ep in eps:
        fail(cluster, ep, 1, clock.now)
    ejected = [ep for ep in eps if ep.ejected_until > clock.now]
    assert len(ejected) == 2
    assert picked(cluster) == set(eps) - set(ejected)


def test_at_least_one_may_be_ejected_and_zero_percent_disables() -> None:
    clock = FakeClock()
    cluster, eps = cluster_of(1, clock, OutlierDetector(consecutive_failures=1, max_ejection_percent=10))
    fail(cluster, eps[0], 1, clock.now)
    assert eps[0].ejected_until > clock.now
    assert cluster.pick(None) is None  # panic threshold 0: nothing to offer
    cluster, eps = cluster_of(3, clock, OutlierDetector(consecutive_failures=1, max_ejection_percent=0))
    fail(cluster, eps[0], 3, clock.now)
    assert eps[0].ejected_until == 0.0


def test_failures_while_ejected_do_not_extend_the_ejection() -> None:
    clock = FakeClock()
    cluster, eps = cluster_of(4, clock, OutlierDetector(consecutive_failures=1, base_ejection_time=5.0))
    fail(cluster, eps[0], 1, clock.now)
    until = eps[0].ejected_until
    clock.now += 1.0
    fail(cluster, eps[0], 1, clock.now)  # a request that was already in flight
    assert eps[0].ejected_until == until
    assert eps[0].ejection_count == 1


def test_failures_of_a_removed_endpoint_do_not_eject() -> None:
    clock = FakeClock()
    cluster, eps = cluster_of(3, clock, OutlierDetector(consecutive_failures=1))
    cluster.remove(eps[0].address)
    fail(cluster, eps[0], 2, clock.now)
    assert eps[0].ejected_until == 0.0
    assert eps[0].total_failures == 2


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        OutlierDetector(consecutive_failures=0)
    with pytest.raises(ValueError):
        OutlierDetector(base_ejection_time=10.0, max_ejection_time=5.0)
    with pytest.raises(ValueError):
        OutlierDetector(max_ejection_percent=120)
