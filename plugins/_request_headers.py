"""Config types of the header names and values that filters set.

Filters change the headers sent upstream through the public contract (gateway/core/filters.py):
`ctx.headers[name] = value` and `ctx.headers.pop(name, None)` in the request phase. The names and
values they take from their configs are checked here when the config is loaded, so a config cannot
name a header that HTTP cannot carry.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

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
