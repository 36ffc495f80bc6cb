"""Filters with the typical chain's shape and no work of their own: the data path's per-filter cost.

`bench/filter_cost.py --chain null` puts these on the route in place of auth_jwt, rate_limit and
cache. Each implements the hooks its namesake implements and asks the data path for the same
things (the request body, the answer held back whole), and touches the request and the answer as
it does (the credential removed, a principal set, headers on the answer), so what a row adds is
what the data path does around a filter: its hooks run and timed, the client's headers copied and
compared, the answer held, decoded and written again, the logging hooks.

The gateway imports them by path (`plugin: _null_filters:NULL_AUTH`), so only a gateway that has
bench/ on its import path can load them: the in-process bench does.
"""

from __future__ import annotations

from typing import ClassVar

from gateway.core.config_types import StrictModel
from gateway.core.context import Principal, RequestContext
from gateway.core.filters import BuildContext, Decision, Filter, Response

_PRINCIPAL = Principal("bench-client")


class NullConfig(StrictModel):
    """No options."""


class NullAuth(Filter):
    """auth_jwt's shape: a request hook that takes the credential away and names the caller."""

    def on_request(self, ctx: RequestContext) -> Decision:
        ctx.headers.pop("authorization", None)
        ctx.principal = _PRINCIPAL
        return None


class NullLimit(Filter):
    """rate_limit's shape: request, response and logging hooks; two headers on the answer."""

    def on_request(self, ctx: RequestContext) -> Decision:
        return None

    def on_response(self, ctx: RequestContext, response: Response) -> None:
        response.headers += (("ratelimit-policy", '"p";q=1;w=1'), ("ratelimit", '"p";r=1;t=0'))

    def on_log(self, ctx: RequestContext) -> None:
        return None


class NullStore(Filter):
    """cache's shape on a miss: the request body read first, the answer held back whole, a header
    set on it, and a logging hook."""

    needs_request_body: ClassVar[bool] = True
    needs_response_body: ClassVar[bool] = True

    def on_request(self, ctx: RequestContext) -> Decision:
        return None

    def on_response(self, ctx: RequestContext, response: Response) -> None:
        response.set_header("x-turnout-cache", "miss")

    def on_log(self, ctx: RequestContext) -> None:
        return None


class _Factory:
    config_model = NullConfig

    def __init__(self, kind: type[Filter]) -> None:
        self.kind = kind

    def __call__(self, config: NullConfig, build: BuildContext) -> Filter:
        return self.kind()


NULL_AUTH = _Factory(NullAuth)
NULL_LIMIT = _Factory(NullLimit)
NULL_STORE = _Factory(NullStore)

# The chain as config, named as filter_cost.py's rows are (the plugin paths above).
NULL_CHAIN = (
    {"plugin": "_null_filters:NULL_AUTH", "config": {}},
    {"plugin": "_null_filters:NULL_LIMIT", "config": {}},
    {"plugin": "_null_filters:NULL_STORE", "config": {}},
)
