"""The response phase: from the upstream's (or a filter's) answer to the bytes the client receives.

    head arrives  no response filters (and no experiment that reads the body): the head's lines are
                  filtered and rendered in one pass and the body is relayed as it arrives;
                  plain response filters that do not read the body: they run on the head, then the
                  body streams; async filters, filters that read the body, or an experiment that
                  records it: the body is buffered (`UpstreamAttempt.buffer`) and the filters run
                  on the whole answer
    answer        a filter's answer, a batched answer or a buffered one runs the response hooks
                  (awaiting those that return an awaitable) and is written with its length;
                  a request a filter chose to watch (`RequestContext.watch_answer`) is held back
                  too, and its watchers see the answer once it is written

What the response hooks leave in the `Response` is what the client receives, after the route's own
response-header rules. A hook that raises gets the client a 500 naming the filter (`FilterError`),
and the endpoint, which answered, is not charged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.core.filters import Response
from gateway.http.headers import filterable_headers, filtered_header_lines, relayed_header_lines
from gateway.upstream_request import upstream_path

if TYPE_CHECKING:
    from gateway.filter_chain import ResponsePending
    from gateway.http.upstream import ResponseHead
    from gateway.proxy import ProxyRequest
    from gateway.upstream_attempt import UpstreamAttempt

AnswerWatcher = Callable[[RequestContext, Response], None]

log = logging.getLogger("turnout.proxy")


def on_upstream_head(request: ProxyRequest, attempt: UpstreamAttempt, head: ResponseHead) -> None:
    """The upstream's head, accepted (no retry): relay it, run the response hooks on it, or hold
    the answer back until its body is complete."""
    route = request.route
    assert route is not None
    chain = route.filters
    exchange = request.exchange
    # A filter asked to see this one answer whole (RequestContext.watch_answer): hold it back.
    watched = request.ctx.answer_watchers is not None and not is_event_stream(head.headers)
    if not chain.on_response and not request.buffer_response and not watched:
        lines = relayed_header_lines(
            head.headers, route.response_headers, request.ctx.request_id.encode(), request.extra_headers
        )
        attempt.relaying = True
        exchange.send_head_block(head.status, lines, head.content_length, head.reason or None)
        return
    holds_body = chain.needs_response_body and (
        chain.buffers_event_streams or not is_event_stream(head.headers)
    )
    if holds_body or watched or not chain.response_is_sync or request.buffer_response:
        attempt.buffer = []  # the filters see the whole answer before the client does
        request.upstream_head = head
        return
    response = Response(head.status, filterable_headers(head.headers), None)
    try:
        pending = chain.run_response_sync(request.ctx, response)
    except GatewayError as error:
        attempt.drop()  # the endpoint answered well: it is not charged
        request.fail(error)
        return
    if pending is not None:  # a plain hook returned an awaitable: hold the answer back
        attempt.buffer = []
        request.upstream_head = head
        request.held_response = (response, pending)
        return
    request.ctx.status = response.status
    attempt.relaying = True
    exchange.send_head_block(
        response.status, final_header_lines(request, response), head.content_length, head.reason or None
    )


def is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    """A server-sent event stream: relayed as it arrives, never held back unless a filter asks."""
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"content-type":
            return value.lstrip().lower().startswith(b"text/event-stream")
    return False


def respond_through_filters(request: ProxyRequest, body: bytes) -> None:
    """A held-back answer is complete: its mirrors get a copy, the response hooks run on it."""
    head = request.upstream_head
    assert head is not None
    request.response_body = body
    if request.assignment is not None:  # a shadow experiment's mirrors get a copy
        offer_to_mirrors(request, head.status, body)
    held = request.held_response
    if held is not None:  # the response hooks began on the head and wait for an awaitable
        request.held_response = None
        response, pending = held
        response.body = body
        request.spawn(respond_async(request, response, pending))
        return
    run_response(request, Response(head.status, filterable_headers(head.headers), body))


def run_response(request: ProxyRequest, response: Response) -> None:
    """The response hooks on a whole answer, then the answer to the client."""
    route = request.route
    assert route is not None
    chain = route.filters
    if not chain.response_is_sync:
        request.spawn(respond_async(request, response, None))
        return
    try:
        pending = chain.run_response_sync(request.ctx, response)
    except GatewayError as error:
        request.fail(error)
        return
    if pending is None:
        write_response(request, response)
    else:
        request.spawn(respond_async(request, response, pending))


async def respond_async(request: ProxyRequest, response: Response, pending: ResponsePending | None) -> None:
    route = request.route
    assert route is not None
    try:
        if pending is None:
            await route.filters.run_response(request.ctx, response)
        else:
            await route.filters.run_response(request.ctx, response, pending.index, pending.awaitable)
    except GatewayError as error:
        request.fail(error)
        return
    write_response(request, response)


def final_header_lines(request: ProxyRequest, response: Response) -> bytes:
    """A response's headers as the client gets them, rendered: the route's header rules applied."""
    route = request.route
    assert route is not None
    return filtered_header_lines(
        response.headers, route.response_headers, request.ctx.request_id.encode(), request.extra_headers
    )


def write_response(request: ProxyRequest, response: Response) -> None:
    """A whole answer to the client, with its length; then the request finishes."""
    request.ctx.status = response.status
    body = response.body or b""
    request.response_body = body
    exchange = request.exchange
    exchange.send_head_block(response.status, final_header_lines(request, response), len(body))
    exchange.send_body(body)
    exchange.end()
    if request.ctx.answer_watchers is not None:
        show_watchers(request.ctx, request.ctx.answer_watchers, response)
    request.finish()


def show_watchers(ctx: RequestContext, watchers: list[AnswerWatcher], response: Response) -> None:
    """The answer, as written, to the filters that asked for it; like a logging hook, a watcher
    that raises is logged and the request goes on."""
    for watcher in watchers:
        try:
            watcher(ctx, response)
        except Exception:
            log.exception("request %s: an answer watcher failed", ctx.request_id)


def offer_to_mirrors(request: ProxyRequest, status: int, body: bytes) -> None:
    """Copy a request of a shadow experiment to its mirrors, with the primary's answer."""
    assignment = request.assignment
    experiments = request.runtime.experiments
    route = request.route
    if assignment is not None and assignment.mirrors and experiments is not None and route is not None:
        ctx = request.ctx
        experiments.offer_shadow(
            assignment, ctx, upstream_path(ctx, route), status, body, ctx.upstream_latency
        )
