"""Transform: edit headers on the way in and out, and move JSON fields of request bodies."""

from __future__ import annotations

from prometheus_client import Counter

from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest
from gateway.core.filters import Decision, Filter, Response
from plugins.transform.body import BodyNotJson, BodyRenamer
from plugins.transform.headers import RequestHeaderEdits, ResponseHeaderEdits

DECISIONS = ("pass", "body_rewritten", "bad_body")


class TransformFilter(Filter):
    """Header edits only: the request body is never read."""

    name = "transform"
    # Built from its YAML options alone: a reload that leaves them (and the route) unchanged keeps
    # this filter, state included (see gateway/runtime.py, `_chain_key`).
    keeps_state_across_reloads = True
    __slots__ = ("_count", "_request", "_response")

    def __init__(
        self, request: RequestHeaderEdits, response: ResponseHeaderEdits, counters: dict[str, Counter]
    ) -> None:
        self._request = request
        self._response = response
        self._count = counters

    def on_request(self, ctx: RequestContext) -> Decision:
        self._request.apply(ctx)
        self._count["pass"].inc()
        return None

    def on_response(self, ctx: RequestContext, response: Response) -> None:
        self._response.apply(response)


class BodyTransformFilter(TransformFilter):
    """Header edits and JSON field moves; asks the data path for the whole request body."""

    needs_request_body = True
    __slots__ = ("_body",)

    def __init__(
        self,
        request: RequestHeaderEdits,
        response: ResponseHeaderEdits,
        body: BodyRenamer,
        counters: dict[str, Counter],
    ) -> None:
        super().__init__(request, response, counters)
        self._body = body

    def on_request(self, ctx: RequestContext) -> Decision:
        self._request.apply(ctx)
        if not ctx.body:
            self._count["pass"].inc()
            return None
        try:
            rewritten = self._body.apply(ctx.body)
        except BodyNotJson as error:
            self._count["bad_body"].inc()
            return Response.error(BadRequest.status, str(error), BadRequest.code)
        if rewritten is None:
            self._count["pass"].inc()
        else:
            ctx.body = rewritten  # the data path forwards ctx.body, with its new length
            self._count["body_rewritten"].inc()
        return None
