"""bench/filter_cost.py --chain null: the typical chain's shape without its work loads by plugin
path and its requests complete through the fake transports."""

from __future__ import annotations

import filter_cost
from _chains import build_chain
from _null_filters import NULL_CHAIN, NullAuth, NullLimit, NullStore
from _scenario import build_scenario

from gateway.core.context import RequestContext
from gateway.core.filters import Response


async def test_the_null_chain_completes_every_request() -> None:
    token = build_chain("typical").headers[0][1].removeprefix("Bearer ")
    request = filter_cost._requests(build_scenario("deployed"), token)

    # _measure raises when a request did not complete.
    assert await filter_cost._measure(NULL_CHAIN, True, request, requests=64, rounds=2, in_flight=4) > 0


def test_each_null_filter_touches_the_request_and_answer_as_its_namesake() -> None:
    ctx = RequestContext("POST", "/", "", {"authorization": "Bearer x", "host": "h"}, "127.0.0.1", 0.0)
    response = Response(200, [("content-type", "application/json")], b"{}")

    assert NullAuth().on_request(ctx) is None
    NullLimit().on_response(ctx, response)
    NullStore().on_response(ctx, response)

    assert "authorization" not in ctx.headers and ctx.principal is not None
    assert [name for name, _ in response.headers] == [
        "content-type",
        "ratelimit-policy",
        "ratelimit",
        "x-turnout-cache",
    ]
    assert NullStore.needs_request_body and NullStore.needs_response_body
