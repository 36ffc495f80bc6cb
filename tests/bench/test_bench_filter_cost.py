"""bench/filter_cost.py: each row's requests really complete through the fake transports."""

from __future__ import annotations

import filter_cost
from _chains import build_chain
from _scenario import build_scenario


async def test_the_typical_chain_costs_more_than_no_filters() -> None:
    chain = build_chain("typical")
    token = chain.headers[0][1].removeprefix("Bearer ")
    request = filter_cost._requests(build_scenario("deployed"), token)

    bare = await filter_cost._measure((), False, request, requests=64, rounds=2, in_flight=4)
    full = await filter_cost._measure(chain.filters, False, request, requests=64, rounds=2, in_flight=4)

    # _measure raises when requests did not complete; a chain of three filters doing real work
    # (an HS256 check, a bucket, a cache store) cannot cost nothing.
    assert 0 < bare < full


def test_unique_bodies_never_repeat_and_keep_their_length() -> None:
    chain = build_chain("typical")
    token = chain.headers[0][1].removeprefix("Bearer ")
    request = filter_cost._requests(build_scenario("deployed"), token, unique_bodies=True)
    large = [request(n).partition(b"\r\n\r\n")[2] for n in range(1, 201, 2)]
    assert len(set(large)) == len(large)
    assert {len(body) for body in large} == {len(build_scenario("deployed").bodies[1])}
