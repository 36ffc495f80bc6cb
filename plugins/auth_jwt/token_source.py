"""Where a request carries its token: `Authorization: Bearer`, then a cookie, then a query parameter.

Unless the token is forwarded, every place that carried one is cleaned before the request goes
upstream: the Authorization header is stripped, the cookie is cut out of the Cookie header, and the
parameter is cut out of `ctx.query` (the data path builds the upstream target from `ctx.query`).
"""

from __future__ import annotations

from urllib.parse import unquote

from gateway.core.context import RequestContext

_AUTHORIZATION = "authorization"
_COOKIE = "cookie"
_BEARER = "bearer"


def _bearer_token(value: str) -> str | None:
    scheme, _, credential = value.strip().partition(" ")
    if scheme.lower() != _BEARER:
        return None
    return credential.strip() or None


def _without_cookie(header: str, name: str) -> str:
    kept = [part.strip() for part in header.split(";") if part.strip().partition("=")[0] != name]
    return "; ".join(part for part in kept if part)


def _without_param(query: str, name: str) -> str:
    return "&".join(part for part in query.split("&") if part.partition("=")[0] != name)


class TokenSource:
    """Finds the token of a request and removes it from what is sent upstream."""

    __slots__ = ("_cookie", "_forward", "_query_param")

    def __init__(self, *, cookie: str | None, query_param: str | None, forward_token: bool) -> None:
        self._cookie = cookie
        self._query_param = query_param
        self._forward = forward_token

    def take(self, ctx: RequestContext) -> str | None:
        """The first token found, or None; all places that carried a token are cleaned."""
        token: str | None = None
        header = ctx.headers.get(_AUTHORIZATION)
        if header is not None:
            token = _bearer_token(header)
            if token is not None and not self._forward:
                ctx.headers.pop(_AUTHORIZATION, None)
        if self._cookie is not None:
            found = ctx.cookie(self._cookie)
            if found:
                token = token or found
                if not self._forward:
                    self._cut_cookie(ctx, self._cookie)
        if self._query_param is not None:
            found = ctx.query_param(self._query_param)
            if found:
                token = token or unquote(found)
                if not self._forward:
                    ctx.query = _without_param(ctx.query, self._query_param)
        return token

    @staticmethod
    def _cut_cookie(ctx: RequestContext, name: str) -> None:
        rest = _without_cookie(ctx.headers[_COOKIE], name)
        if rest:
            ctx.headers[_COOKIE] = rest
        else:
            ctx.headers.pop(_COOKIE, None)
