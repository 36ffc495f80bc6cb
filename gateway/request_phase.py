"""The request phase: the route's request hooks, from the first to an answer or to the backend.

Plain hooks run inside the listener's callback; the first hook declared `async def`, or a plain
hook that returns an awaitable, moves the rest of the phase into a task, which rejoins the same
request. A route whose filters read the body gets it whole first. On an experiment route, the arm
is assigned just before the first hook that reads it (a cache keyed per arm), so the hooks pause
there once (`FilterChain.arm_index`).

A hook answers by returning a `Response` (it then passes the response phase like an upstream
answer), refuses by raising a `GatewayError`, and fails by raising anything else (a `FilterError`
naming it: 500). When every hook let the request through, `choose_backend` takes over.
"""

from __future__ import annotations

from collections.abc import Awaitable
from random import random
from typing import TYPE_CHECKING, cast

from gateway.backend import assign, choose_backend
from gateway.core.errors import GatewayError
from gateway.core.filters import Response

if TYPE_CHECKING:
    from gateway.proxy import ProxyRequest


def run_request_phase(request: ProxyRequest) -> None:
    """The request hooks of a route that has filters (`ProxyRequest.start` skips those that do not)."""
    route = request.route
    assert route is not None
    chain = route.filters
    ctx = request.ctx
    exchange = request.exchange
    if chain.broken is not None:  # a filter failed to start: the route answers with its error
        request.fail(chain.broken)
        return
    for share, watcher in chain.answer_samplers:
        if random() < share:  # the only cost of a request left out of the sample
            ctx.watch_answer(watcher)
    if chain.edits_headers:
        # What the request phase leaves in ctx.headers is what the upstream gets: the client's
        # headers are kept apart to tell what the filters changed (gateway/upstream_request.py).
        ctx.headers = dict(exchange.headers)
    if chain.needs_request_body and ctx.body is None:  # routing by an OpenAI body's model read it
        if not exchange.body_complete:
            request.spawn(_run_async(request, 0, None))
            return
        ctx.body = exchange.take_complete_body()
    if not chain.on_request:  # answer samplers and body readers only: no hook to run
        choose_backend(request)
        return
    _run(request, 0)


def _arm_stop(request: ProxyRequest) -> int | None:
    """Where the request hooks pause for the experiment's assignment (before a cache lookup)."""
    route = request.route
    assert route is not None
    if route.experiment is None or request.assignment is not None:
        return None
    return route.filters.arm_index


def _run(request: ProxyRequest, index: int) -> None:
    """Run the plain request hooks from `index`; go on in a task at the first that must be awaited."""
    route = request.route
    assert route is not None
    chain = route.filters
    while True:
        stop = _arm_stop(request)
        try:
            answer, index = chain.run_request_sync(request.ctx, index, stop)
        except GatewayError as error:
            request.fail(error)
            return
        if answer is not None:
            if isinstance(answer, Response):
                request.answer(answer)
            else:  # a plain hook returned an awaitable
                request.spawn(_run_async(request, index, cast("Awaitable[object]", answer)))
            return
        if stop is not None and index == stop:
            assert route.experiment is not None
            if assign(request, route.experiment) is None:
                return
            continue
        break
    if index < len(chain.on_request):
        request.spawn(_run_async(request, index, None))
    else:
        choose_backend(request)


async def _run_async(request: ProxyRequest, index: int, pending: Awaitable[object] | None) -> None:
    route = request.route
    assert route is not None
    ctx = request.ctx
    chain = route.filters
    try:
        if chain.needs_request_body and ctx.body is None:
            ctx.body = await request.exchange.read_body()
        while True:
            stop = _arm_stop(request)
            answer, index = await chain.run_request(ctx, index, stop, pending)
            pending = None
            if answer is not None or stop is None or index != stop:
                break
            assert route.experiment is not None
            if assign(request, route.experiment) is None:
                return
    except GatewayError as error:
        request.fail(error)
        return
    except ConnectionResetError:
        request.client_gone()
        return
    if answer is not None:
        request.answer(answer)
    else:
        choose_backend(request)
