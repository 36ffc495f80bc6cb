"""What the upstream receives: the client's request as the request filters left it.

Filters edit `ctx.headers`, `ctx.path` and `ctx.query` (gateway/core/filters.py); the data path
forwards the client's header lines as they came (names' case, order and repeats kept) except those a
filter removed or replaced, then the values the filters set. Both are decided by comparing the
headers the request phase ended with to the headers the client sent, once per request and only on
routes whose filters have a request phase: a route without one forwards the client's lines as they
are, at no cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from gateway.http.headers import build_request_head, forwarding_lines

if TYPE_CHECKING:
    from gateway.core.context import RequestContext
    from gateway.http.exchange import HttpExchange
    from gateway.route import CompiledRoute

# Header names the gateway writes itself (gateway/http/headers.py): hop-by-hop and framing headers,
# whose edit could only desynchronise the two connections (RFC 9110 7.6.1, RFC 9112 6), and the
# forwarding headers. A filter's edit of these is not a line of its own: x-forwarded-for and
# traceparent are read from `ctx.headers` when the gateway writes its lines, the rest is ignored.
_OWNED = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "traceparent",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
    }
)
# What a header name may hold: an RFC 9110 token, in lower case as `ctx.headers` keeps names.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
# Characters kept as they are when a filter's path or query goes on the request line: every
# character RFC 3986 allows there, including '%' so that a filter's own percent-encoding stays.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"


class HeaderEdits:
    """The request phase's edits of the headers: client lines to drop, and lines to add."""

    __slots__ = ("add", "strip")

    def __init__(self, strip: set[str], add: list[tuple[str, str]]) -> None:
        self.strip = strip
        """Lower-case names whose client-sent lines are not forwarded (removed or replaced)."""
        self.add = add
        """(name, value) pairs sent after the client's remaining lines, in the filters' order."""


def header_edits(sent: dict[str, str], edited: dict[str, str]) -> HeaderEdits | None:
    """What changed between the headers as the client `sent` them and as the filters `edited` them;
    None when nothing did. ValueError for a name or value that HTTP/1.1 cannot carry (a filter's bug:
    a line break in a value would let it write headers of its own choosing)."""
    if edited == sent:
        return None
    strip: set[str] = set()
    for name, value in sent.items():  # plain loops: a comprehension is a function call in 3.11
        if edited.get(name) != value and name not in _OWNED:
            strip.add(name)
    add: list[tuple[str, str]] = []
    for name, value in edited.items():
        if sent.get(name) == value:
            continue
        if name not in _OWNED:
            _check(name, value)
            add.append((name, value))
    return HeaderEdits(strip, add)


def _check(name: str, value: str) -> None:
    if not name or not set(name) <= _TOKEN:
        raise ValueError(f"a filter set a request header with an invalid name: {name!r}")
    if any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F or ord(char) > 0xFF for char in value):
        raise ValueError(f"a filter set request header {name!r} to a value HTTP cannot carry: {value!r}")


def request_target(path: str, query: str) -> bytes:
    """The request target for a path and query that a filter or a rewrite changed; characters that
    cannot appear on a request line (a space, a line break, non-ASCII) are percent-encoded."""
    target = quote(path, safe=_PATH_SAFE)
    if query:
        target += "?" + quote(query, safe=_QUERY_SAFE)
    return target.encode("ascii")


def upstream_path(ctx: RequestContext, route: CompiledRoute) -> str:
    """The path the upstream sees: the request filters', after the route's prefix rewrite."""
    rewrite = route.rewrite
    return ctx.path if rewrite is None else rewrite.apply(ctx.path)


def upstream_head(
    exchange: HttpExchange,
    ctx: RequestContext,
    route: CompiledRoute,
    proto_line: bytes,
    body_length: int | None,
    address: str,
) -> bytes:
    """The request head sent to `address`: the client's request as the filters left it, with the
    route's header rules and the gateway's forwarding headers; `body_length` None means a chunked
    body."""
    if route.rewrite is None and ctx.path == exchange.path and ctx.query == exchange.query:
        target = exchange.target  # as the client sent it
    else:  # a rewrite, or a filter changed the path or the query (removed a token)
        target = request_target(upstream_path(ctx, route), ctx.query)
    headers = ctx.headers
    # On a route with request filters they worked on a copy of the client's headers (request_phase).
    edits = None if headers is exchange.headers else header_edits(exchange.headers, headers)
    return build_request_head(
        exchange.method,
        target,
        exchange.raw_headers,
        headers,
        route.request_headers,
        forwarding_lines(headers, ctx.client_ip, proto_line, ctx.request_id),
        body_length,
        address,
        edits.strip if edits is not None else None,
        edits.add if edits is not None else None,
    )
