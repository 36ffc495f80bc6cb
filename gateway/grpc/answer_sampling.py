"""Answer sampling (`Filter.answer_sample_rate`) for a unary gRPC call, whose answer is one message.

The HTTP data path draws before the request hooks and copies a drawn answer as it streams
(`RequestContext.watch_answer`); a unary call's reply reaches the relay whole, as bytes the client
is sent anyway, so here the draw comes once the reply is in hand and the watchers are shown that
message itself (no copy). The request message is `ctx.body` for a filter that reads bodies (a
monitor does). A reply longer than `ANSWER_COPY_MAX_BYTES` is shown without its body, as over HTTP.
"""

from __future__ import annotations

from random import random

from gateway.core.context import ANSWER_COPY_MAX_BYTES, RequestContext
from gateway.core.filters import Response
from gateway.filter_chain import FilterChain
from gateway.grpc.oip_batch_format import GRPC_CONTENT_TYPE
from gateway.response_phase import show_watchers

_HEADERS = [("content-type", GRPC_CONTENT_TYPE)]


def sample_reply(ctx: RequestContext, chain: FilterChain, message: bytes) -> None:
    """Draw for each sampler of the route; the drawn ones see the reply (status 200: an OK call)."""
    for share, watcher in chain.answer_samplers:
        if random() < share:  # the only cost of a call left out of the sample
            body = message if len(message) <= ANSWER_COPY_MAX_BYTES else None
            show_watchers(ctx, [watcher], Response(200, list(_HEADERS), body))
