"""From verified claims to a `Principal` and to the headers forwarded upstream, and the check that
the time claims are numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core.context import Principal
from plugins._request_headers import check_header_value
from plugins.auth_jwt.config import JwtProvider

# RFC 7519 4.1.4-4.1.6: the claims whose value is a NumericDate.
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")


class MissingPrincipalClaim(Exception):
    """The token has no usable principal claim."""


def non_numeric_date(claims: Mapping[str, Any]) -> str | None:
    """The first time claim that is present but not a NumericDate, or None.

    RFC 7519 2 defines a NumericDate as a JSON number. PyJWT converts these claims with `int()`, so
    it takes the string "9999999999" for a time and `true` for 1; a string `exp` also escaped the
    verified-token cache, which can only bound a number. Such a token is refused: JSON numbers only,
    finite ones (Python's JSON reader also accepts NaN and Infinity)."""
    for name in NUMERIC_DATE_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return name
        if isinstance(value, float) and not math.isfinite(value):
            return name
    return None


def _text(value: Any) -> str | None:
    """A claim as a single string: strings as they are, numbers written out, anything else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _words(value: Any) -> frozenset[str]:
    """A claim holding several words: a space-separated string (RFC 8693 `scope`) or a list."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


def _header_value(value: Any) -> str | None:
    """A claim written as a header value: lists comma-separated, objects as JSON. None when the
    result would be unsafe in a header (a line break in a claim must not split the request head)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = ",".join(item for item in (_text(element) for element in value) if item is not None)
    elif isinstance(value, dict):
        try:
            text = orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            return None  # nested deeper than JSON can be written back (254 levels)
    else:
        scalar = _text(value)
        if scalar is None:
            return None
        text = scalar
    try:
        return check_header_value(text)
    except ValueError:
        return None


class ClaimMapping:
    """Reads a principal and forwarded headers from claims, as one provider's config says."""

    __slots__ = ("_forward", "_principal", "_roles", "_scopes", "_tenant", "_tier")

    def __init__(self, provider: JwtProvider) -> None:
        self._principal = provider.principal_claim
        self._tenant = provider.tenant_claim
        self._scopes = provider.scopes_claim
        self._tier = provider.tier_claim
        self._roles = provider.roles_claim
        self._forward = tuple(provider.forward_claims.items())

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        principal_id = _text(claims.get(self._principal))
        if not principal_id:
            raise MissingPrincipalClaim(f"the token has no usable '{self._principal}' claim")
        return Principal(
            id=principal_id,
            tenant=None if self._tenant is None else _text(claims.get(self._tenant)),
            scopes=frozenset() if self._scopes is None else _words(claims.get(self._scopes)),
            tier=None if self._tier is None else _text(claims.get(self._tier)),
            roles=frozenset() if self._roles is None else _words(claims.get(self._roles)),
        )

    def forwarded(self, claims: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(header, value) for each forwarded claim the token carries."""
        pairs: list[tuple[str, str]] = []
        for claim, header in self._forward:
            if claim in claims:
                value = _header_value(claims[claim])
                if value is not None:
                    pairs.append((header, value))
        return pairs
