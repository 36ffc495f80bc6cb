"""CORS: answer preflight requests at the gateway and mark responses readable by allowed origins.

A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here with 204 and
never reaches the model server; it carries no credentials, so this filter goes before the
authentication filters. A refused preflight gets 403 with the reason, for whoever debugs it with
curl; the browser refuses the call either way.
"""

from __future__ import annotations

from prometheus_client import Counter

from gateway.core.context import RequestContext
from gateway.core.errors import Forbidden
from gateway.core.filters import Decision, Filter, Response
from plugins.cors.config import ANY, CorsConfig
from plugins.cors.origins import OriginMatcher

DECISIONS = ("preflight", "preflight_refused", "allowed", "refused")
_OPTIONS = "OPTIONS"
_ALLOW_ORIGIN = "access-control-allow-origin"
_ALLOW_CREDENTIALS = "access-control-allow-credentials"
_VARY = "vary"


def _add_vary(response: Response, names: str) -> None:
    """Add names to Vary, keeping what is there (a cache must key on them too)."""
    current = response.header(_VARY)
    if current is None:
        response.set_header(_VARY, names)
        return
    present = {part.strip().lower() for part in current.split(",")}
    if ANY in present:
        return
    extra = [name for name in names.split(", ") if name not in present]
    if extra:
        response.set_header(_VARY, ", ".join([current, *extra]))


class CorsFilter(Filter):
    """The CORS policy of one route, with every header value prepared at build time."""

    name = "cors"
    # Built from its YAML options alone: a reload that leaves them (and the route) unchanged keeps
    # this filter, state included (see gateway/runtime.py, `_chain_key`).
    keeps_state_across_reloads = True
    __slots__ = (
        "_allow_headers",
        "_any_header",
        "_any_method",
        "_count",
        "_credentials",
        "_expose",
        "_header_names",
        "_max_age",
        "_methods",
        "_methods_value",
        "_origins",
        "_star",
    )

    def __init__(self, config: CorsConfig, counters: dict[str, Counter]) -> None:
        self._origins = OriginMatcher(config.allow_origins)
        # "*" may be sent only without credentials; with them the origin itself is echoed.
        self._star = self._origins.allows_any and not config.allow_credentials
        self._any_method = ANY in config.allow_methods
        self._methods = frozenset(config.allow_methods)
        self._methods_value = ", ".join(config.allow_methods)
        self._any_header = ANY in config.allow_headers
        self._header_names = frozenset(config.allow_headers)
        self._allow_headers = ", ".join(name for name in config.allow_headers if name != ANY)
        self._expose = ", ".join(config.expose_headers)
        self._max_age = str(int(config.max_age))
        self._credentials = config.allow_credentials
        self._count = counters

    def on_request(self, ctx: RequestContext) -> Decision:
        if ctx.method != _OPTIONS:
            return None
        headers = ctx.headers
        origin = headers.get("origin")
        requested_method = headers.get("access-control-request-method")
        if origin is None or requested_method is None:
            return None  # a plain OPTIONS request, for the upstream to answer
        if not self._origins.allows(origin):
            return self._refuse(f"origin {origin} is not allowed")
        if not self._any_method and requested_method.strip().upper() not in self._methods:
            return self._refuse("method not allowed")
        requested = [
            name.strip().lower()
            for name in headers.get("access-control-request-headers", "").split(",")
            if name.strip()
        ]
        if not self._any_header and not self._header_names.issuperset(requested):
            return self._refuse(
                "request headers not allowed: " + ", ".join(sorted(set(requested) - self._header_names))
            )
        response = Response(204)
        self._mark(response, origin)
        response.headers.append(("access-control-allow-methods", self._methods_value))
        allow_headers = ", ".join(requested) if self._any_header else self._allow_headers
        if allow_headers:
            response.headers.append(("access-control-allow-headers", allow_headers))
        response.headers.append(("access-control-max-age", self._max_age))
        if self._any_header:
            _add_vary(response, "access-control-request-headers")
        self._count["preflight"].inc()
        return response

    def on_response(self, ctx: RequestContext, response: Response) -> None:
        origin = ctx.headers.get("origin")
        if origin is None or (ctx.method == _OPTIONS and "access-control-request-method" in ctx.headers):
            return  # no browser origin, or a preflight: its answer was made whole in the request phase
        if not self._origins.allows(origin):
            # The gateway owns the policy: an upstream's own CORS headers must not widen it.
            response.headers = [
                (key, value)
                for key, value in response.headers
                if key not in (_ALLOW_ORIGIN, _ALLOW_CREDENTIALS)
            ]
            _add_vary(response, "origin")
            self._count["refused"].inc()
            return
        self._mark(response, origin)
        if self._expose:
            response.set_header("access-control-expose-headers", self._expose)
        self._count["allowed"].inc()

    def _mark(self, response: Response, origin: str) -> None:
        if self._star:
            response.set_header(_ALLOW_ORIGIN, ANY)
        else:
            response.set_header(_ALLOW_ORIGIN, origin)
            _add_vary(response, "origin")
        if self._credentials:
            response.set_header(_ALLOW_CREDENTIALS, "true")

    def _refuse(self, reason: str) -> Response:
        self._count["preflight_refused"].inc()
        response = Response.error(Forbidden.status, f"CORS preflight refused: {reason}", Forbidden.code)
        _add_vary(response, "origin")
        return response
