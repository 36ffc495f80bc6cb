"""Routing an OpenAI request by the `model` in its body, before the route's phases begin.

The router answers a pending match when the first rule whose path fits is an OpenAI route that
matches on the model (`RouteRule.reads_body_model`). Here the body is read once (in a task only when
it has not all arrived), parsed once with the bounded JSON loader, and matched again with its model.
The body, renamed where the route is an alias (`rewrite.model`), becomes `ctx.body`: every later
phase (filters, the upstream call) takes it from there, none parses the request again for routing.

`GET /v1/models` (and `/v1/models/{id}`) on such a route is answered here, from the models the
config routes: a client listing models learns the names the gateway accepts, aliases included.

Answers in OpenAI's error shape: 400 for a body that is not a JSON object with a string `model`,
404 `model_not_found` for a model no route takes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from gateway.core.errors import GatewayError
from gateway.core.protocols.openai import (
    OpenAIRequestError,
    add_usage_request,
    asks_for_usage,
    model_card,
    model_list,
    model_lookup,
    prompt_prefix,
    read_request,
    unknown_model,
    with_model,
)
from gateway.llm_meter import CompletionMeter

if TYPE_CHECKING:
    from gateway.proxy import ProxyRequest

_LOOKUP_METHODS = frozenset(("GET", "HEAD"))


def route_by_body_model(request: ProxyRequest) -> None:
    """Continue a request whose route depends on its body's model: answer it, or begin its route."""
    exchange = request.exchange
    if exchange.method in _LOOKUP_METHODS:
        lookup = model_lookup(request.ctx.path)
        if lookup is not None:
            _answer_models(request, lookup)
            return
    if exchange.body_complete:
        _route(request, exchange.take_complete_body())
    else:
        request.spawn(_read_then_route(request))


async def _read_then_route(request: ProxyRequest) -> None:
    try:
        body = await request.exchange.read_body()
    except GatewayError as error:  # a body over the listener's limit
        request.fail(error)
        return
    except ConnectionResetError:
        request.client_gone()
        return
    _route(request, body)


def _route(request: ProxyRequest, body: bytes) -> None:
    ctx = request.ctx
    exchange = request.exchange
    try:
        document, model = read_request(body)
        match = request.runtime.router.match(
            exchange.method, ctx.path, ctx.host, exchange.headers, body_model=model, body_read=True
        )
        if match is None:
            raise unknown_model(model)
    except OpenAIRequestError as error:
        _respond(request, error.status, error.body)
        return
    route = match.payload
    rename = route.model_rewrite
    asked_usage = True
    if document.get("stream") is True:
        asked_usage = asks_for_usage(document)
        if not asked_usage:  # usage is read from the stream's last chunk: ask for it
            add_usage_request(document)
    if not asked_usage or (rename is not None and rename != model):
        ctx.body = with_model(document, rename or model)
    else:
        ctx.body = body
    request.body_meter = CompletionMeter(model, strip_usage=not asked_usage)
    cluster = route.cluster
    if cluster is not None and cluster.prefix_affinity is not None:
        request.affinity_key = prompt_prefix(document, cluster.prefix_affinity)
    request.begin(match)


def _answer_models(request: ProxyRequest, model: str) -> None:
    models = request.runtime.router.body_models
    created = int(time.time())
    if not model:
        _respond(request, 200, model_list(models, created))
    elif model in models:
        _respond(request, 200, orjson.dumps(model_card(model, created)))
    else:
        _respond(request, 404, unknown_model(model).body)


def _respond(request: ProxyRequest, status: int, body: bytes) -> None:
    """An answer before any route: no filters run, the request is counted and logged as unrouted."""
    ctx = request.ctx
    ctx.status = status
    request.exchange.respond(status, body, headers=((b"x-request-id", ctx.request_id.encode()),))
    request.finish()
