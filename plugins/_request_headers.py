"""Changes to the headers sent upstream, recorded on the request context for the data path.

Filters see the request headers as `ctx.headers`, but the data path builds the upstream request from
the headers as the client sent them. A filter that removes or sets a header therefore does both:
it updates `ctx.headers`, so the filters after it see the change, and records the change in two
context slots that the data path applies when it builds the upstream request:

- `ctx.state["strip_request_headers"]`: a set of lower-case names; every client-sent header with
  one of these names is dropped.
- `ctx.state["add_request_headers"]`: a list of (lower-case name, value) pairs, appended after the
  stripping, in order.

Both slots are replaced, never changed in place, so a filter may put a prepared list shared by all
requests there. Setting a header strips the client's copy and adds the new value, so a client can
never smuggle a header that a filter sets (an identity header forwarded from a verified token).

`HeaderName` and `HeaderValue` are the config types of header names and values that filters set.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from gateway.core.context import RequestContext

STRIP_REQUEST_HEADERS = "strip_request_headers"
ADD_REQUEST_HEADERS = "add_request_headers"


def remove_request_header(ctx: RequestContext, name: str) -> None:
    """Send no header `name` upstream: neither the client's nor one an earlier filter set."""
    ctx.headers.pop(name, None)
    state = ctx.state
    stripped: set[str] | frozenset[str] | None = state.get(STRIP_REQUEST_HEADERS)
    if stripped is None:
        state[STRIP_REQUEST_HEADERS] = {name}
    elif name not in stripped:
        state[STRIP_REQUEST_HEADERS] = {*stripped, name}
    added: list[tuple[str, str]] | None = state.get(ADD_REQUEST_HEADERS)
    if added and any(pair[0] == name for pair in added):
        state[ADD_REQUEST_HEADERS] = [pair for pair in added if pair[0] != name]


def set_request_header(ctx: RequestContext, name: str, value: str) -> None:
    """Send header `name` upstream with exactly this value, replacing any other copy."""
    remove_request_header(ctx, name)
    ctx.headers[name] = value
    added: list[tuple[str, str]] | None = ctx.state.get(ADD_REQUEST_HEADERS)
    ctx.state[ADD_REQUEST_HEADERS] = [(name, value)] if added is None else [*added, (name, value)]


# RFC 9110 section 5.6.2: a header name is a "token" of these characters.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def check_header_name(value: str) -> str:
    """A header name from a config, lower-cased; ValueError when it is not a valid name."""
    name = value.strip().lower()
    if not name or not set(name) <= _TOKEN_CHARS:
        raise ValueError(f"invalid header name {value!r}")
    return name


def check_header_value(value: str) -> str:
    """A header value from a config; ValueError when it holds a line break or another control."""
    if any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F for char in value):
        raise ValueError(f"invalid header value {value!r}: control characters are not allowed")
    return value


HeaderName = Annotated[str, AfterValidator(check_header_name)]
HeaderValue = Annotated[str, AfterValidator(check_header_value)]
