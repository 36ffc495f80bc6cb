"""Field types shared by the config models: numbers that refuse booleans, names, hosts, header names,
URL paths, regexes and positive durations. Each validator says what is wrong in plain words."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from gateway.core.config_types import Duration


def refuse_bool(value: Any) -> Any:
    """YAML reads yes/no/on/off as booleans, and pydantic would then turn true into 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


Integer = Annotated[int, BeforeValidator(refuse_bool)]
Number = Annotated[float, BeforeValidator(refuse_bool)]


def text_from_int(value: Any) -> Any:
    """Let ``version: 1`` or ``x-tenant: 42`` mean the text "1" / "42", as the reader intended."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(text_from_int)]
"""A string that also accepts a YAML integer."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_NAME = re.compile(NAME_PATTERN)


def check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"invalid name {value!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    return value


Name = Annotated[
    str,
    AfterValidator(check_name),
    WithJsonSchema({"type": "string", "pattern": NAME_PATTERN}),
]
"""A cluster or route name: it appears in metrics labels and log lines, so no spaces or quotes."""

# A DNS label (RFC 1123): letters, digits and inner hyphens, at most 63 characters.
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# The longest DNS name that fits in a query (RFC 1035).
_MAX_DNS_NAME = 253


def is_dns_name(name: str) -> bool:
    """A syntactically valid DNS name (lower-case), whose last label is not all digits."""
    labels = name.rstrip(".").split(".")
    return (
        0 < len(name) <= _MAX_DNS_NAME
        and all(_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )


def normalize_host(value: str) -> str:
    """An IP address (compressed; IPv6 with or without brackets) or a DNS name (lower-cased)."""
    text = value.strip()
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    name = bare.lower()
    if not is_dns_name(name):
        raise ValueError(f"invalid host {value!r}: use an IP address (127.0.0.1, ::1) or a DNS name")
    return name


Host = Annotated[
    str,
    AfterValidator(normalize_host),
    WithJsonSchema({"type": "string", "description": "an IP address or a DNS name"}),
]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# RFC 9110 "token" characters: what a header name may contain.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def header_name(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"invalid header name {value!r}: use letters, digits and '-'")
    return value.lower()


HeaderName = Annotated[
    str,
    AfterValidator(header_name),
    WithJsonSchema({"type": "string", "pattern": _TOKEN.pattern, "description": "a header name"}),
]
"""A header name, lower-cased: HTTP header names are case-insensitive."""


def header_value(value: str) -> str:
    # RFC 9110 section 5.5: a field value holds no CR, LF or NUL. A line break in a configured value
    # would end the header there and start another one of the config's making in every message.
    if any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F for char in value):
        raise ValueError(f"invalid header value {value!r}: control characters (a line break) are not allowed")
    return value


HeaderValue = Annotated[Text, AfterValidator(header_value)]
"""A header value to send: text (a YAML number reads as its digits) without control characters."""


def url_path(value: str) -> str:
    if not value.startswith("/") or any(ch.isspace() for ch in value):
        raise ValueError(f"invalid path {value!r}: a path starts with '/' and has no spaces")
    return value


UrlPath = Annotated[str, AfterValidator(url_path)]


def compile_regex(value: Any) -> Any:
    """Compile once at load time, so a bad pattern is an error with its line, not a failed request."""
    if not isinstance(value, str):
        return value
    try:
        return re.compile(value)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ValueError(f"invalid regular expression {value!r}: {exc.msg}{where}") from None


Regex = Annotated[
    re.Pattern[str],
    BeforeValidator(compile_regex),
    WithJsonSchema({"type": "string", "format": "regex", "description": "a Python regular expression"}),
]


def require_positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be longer than zero, like 1s or 250ms")
    return seconds


PositiveDuration = Annotated[Duration, AfterValidator(require_positive)]
"""A duration where zero makes no sense (a timeout, an interval)."""
