"""Who is the unit of assignment: the id read from a request, and the sticky cookie issued when none.

Sources are tried in order, decided once when the experiment is compiled:
``header:NAME``, ``cookie:NAME``, ``query:NAME`` and ``jwt:CLAIM`` (``jwt:sub`` is the authenticated
principal's id; other claims come from ``ctx.state["jwt_claims"]``, which the JWT filter fills).
When no source yields an id and cookies may be issued, a random id is made, used for this request,
and returned as a ``Set-Cookie`` value so the next request carries it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from gateway.core.context import RequestContext

UnitSource = Callable[[RequestContext], str | None]

# Ids longer than this are refused (treated as absent): a unit id becomes a storage key, and a
# client must not be able to make those arbitrarily large.
MAX_UNIT_ID_LENGTH = 256
# 16 random bytes (128 bits): collisions are out of reach at any number of users.
_COOKIE_ID_BYTES = 16
# One year: a returning user keeps their arm for the life of any realistic experiment.
COOKIE_MAX_AGE_S = 365 * 24 * 3600
# Where the JWT filter leaves the verified token's claims for later stages.
JWT_CLAIMS_STATE_KEY = "jwt_claims"


def _usable(value: str | None) -> str | None:
    return value if value and len(value) <= MAX_UNIT_ID_LENGTH else None


def _jwt_claim(claim: str) -> UnitSource:
    def read(ctx: RequestContext) -> str | None:
        if claim == "sub" and ctx.principal is not None:
            return _usable(ctx.principal.id)
        claims = ctx.state.get(JWT_CLAIMS_STATE_KEY)
        value = claims.get(claim) if isinstance(claims, dict) else None
        # Numeric ids are common in tokens; booleans and objects are not identities.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return _usable(value) if isinstance(value, str) else None

    return read


def unit_source(spec: str) -> UnitSource:
    """`header:NAME`, `cookie:NAME`, `query:NAME` or `jwt:CLAIM` as a function of the context."""
    kind, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"invalid unit source {spec!r}")
    if kind == "header":
        header = name.lower()
        return lambda ctx: _usable(ctx.headers.get(header))
    if kind == "cookie":
        return lambda ctx: _usable(ctx.cookie(name))
    if kind == "query":
        return lambda ctx: _usable(ctx.query_param(name))
    if kind == "jwt":
        return _jwt_claim(name)
    raise ValueError(f"invalid unit source {spec!r}: use header:, cookie:, query: or jwt:NAME")


def new_unit_id() -> str:
    return secrets.token_urlsafe(_COOKIE_ID_BYTES)


def set_cookie_value(name: str, unit_id: str, *, secure: bool) -> str:
    """The Set-Cookie header value that makes a unit id sticky: site-wide, a year, not readable by
    scripts, sent on top-level navigation (Lax), and only over TLS when the listener is TLS."""
    value = f"{name}={unit_id}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax"
    return value + "; Secure" if secure else value


class UnitResolver:
    """Reads a request's unit id from the configured sources; issues a cookie when allowed."""

    __slots__ = ("_cookie_name", "_secure", "_sources")

    def __init__(self, specs: Sequence[str], *, issue_cookie: bool, secure_cookie: bool) -> None:
        self._sources = tuple(unit_source(spec) for spec in specs)
        cookie_names = [spec.partition(":")[2] for spec in specs if spec.startswith("cookie:")]
        if issue_cookie and not cookie_names:
            raise ValueError("issuing a cookie needs a cookie:NAME unit source")
        self._cookie_name = cookie_names[0] if issue_cookie else None
        self._secure = secure_cookie

    def resolve(self, ctx: RequestContext) -> tuple[str | None, str | None]:
        """(unit id, Set-Cookie value or None); the id is None when nothing identifies the unit."""
        for source in self._sources:
            unit_id = source(ctx)
            if unit_id is not None:
                return unit_id, None
        if self._cookie_name is None:
            return None, None
        unit_id = new_unit_id()
        return unit_id, set_cookie_value(self._cookie_name, unit_id, secure=self._secure)
