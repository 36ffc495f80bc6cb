from __future__ import annotations

import random
from collections import Counter

from routing.balancers.least_queue import LeastQueueFactory, reported_load
from routing.endpoints import Endpoint


def members(count: int) -> list[Endpoint]:
    return [Endpoint(host="10.0.0.4", port=9000 + i) for i in range(count)]


def test_prefers_the_endpoint_reporting_an_idle_queue() -> None:
    busy, idle = members(2)
    busy.queue_depth = 12
    idle.queue_depth = 0
    idle.inflight = 4  # our own count is ignored while a queue depth is reported
    balancer = LeastQueueFactory(random.Random(1))([busy, idle])
    assert {balancer.pick(None) for _ in range(100)} == {idle}


def test_shares_follow_reported_depth_across_many_endpoints() -> None:
    eps = members(4)
    for ep, depth in zip(eps, [0, 3, 3, 3], strict=True):
        ep.queue_depth = depth
    balancer = LeastQueueFactory(random.Random(2))(eps)
    seen = Counter(id(balancer.pick(None)) for _ in range(8000))
    assert 0.47 < seen[id(eps[0])] / 8000 < 0.53


def test_load_is_the_reported_backlog_plus_own_inflight() -> None:
    ep = members(1)[0]
    ep.inflight = 7
    assert reported_load(ep) == 7
    ep.reported_inflight = 2
    assert reported_load(ep) == 2 + 7
    ep.queue_depth = 5
    assert reported_load(ep) == 5 + 7  # the queue depth wins over the reported in-flight count


def test_endpoints_without_reports_are_judged_by_own_inflight() -> None:
    loaded, free = members(2)
    loaded.inflight = 3
    balancer = LeastQueueFactory(random.Random(3))([loaded, free])
    assert {balancer.pick(None) for _ in range(50)} == {free}


def test_own_inflight_breaks_ties_between_equal_reports() -> None:
    a, b = members(2)
    a.queue_depth = b.queue_depth = 2
    a.inflight = 1
    balancer = LeastQueueFactory(random.Random(4))([a, b])
    assert {balancer.pick(None) for _ in range(50)} == {b}
