"""The filter chains a benchmark can put on turnout's route, and the requests each chain needs.

    none       no filters: the proxy alone.
    typical    auth_jwt -> rate_limit -> cache, as a production inference route has them, on the
               path every request takes when nothing refuses it and nothing is cached yet:
               * auth_jwt: one provider, HS256 with an inline secret made for the run; every request
                 carries the same valid token, minted here with PyJWT, so each one is verified;
               * rate_limit: in this process, one limit per principal far above any offered load,
                 so every request is counted against its bucket and none is refused;
               * cache: in memory, per principal (`vary_on: [principal]`: an authenticated answer is
                 cached only for its caller), and every request has its own query string, so
                 every request is keyed, looked up, misses, leads its (single) flight, goes upstream
                 and has its answer stored, and once the cache holds max_entries answers each store
                 also evicts the oldest: the steady state of a cache whose hit ratio is zero.
                 With --scenario deployed the two bodies come again and again, so the cache reads
                 each one once and remembers it by its bytes (plugins/cache/body_memo.py): its
                 misses cost what a repeated body's do, as a hit's key does. A body never seen
                 before costs more (the parse and write of its canonical form):
                 `bench/filter_cost.py --unique-bodies` measures that.
               (A cache limited to POST under GET load would not represent a miss: the filter returns
               before making a key when the method is not cached, so nothing would be looked up.)
    typical-raw-body
               the typical chain with the cache's `canonical_json: false`: a JSON body is keyed as
               sent, not parsed and written back (it matters for POST bodies: --scenario deployed).
    cache-hit  the cache alone, and every request the same: after the first, each is answered from
               the cache without going upstream.

A chain decides the load as well as the config (a header, a query string per request), and every
target of one run gets the same requests, so rows stay comparable: nginx and the upstream ignore
what they do not use.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

CHAIN_NAMES = ("none", "typical", "cache-hit", "typical-raw-body")

ISSUER = "https://issuer.bench.invalid"  # .invalid (RFC 2606): can never name a real issuer
AUDIENCE = "turnout-bench"
SUBJECT = "bench-client"
# The token must outlive the longest run by far; a day does, and still expires (auth_jwt requires exp).
TOKEN_LIFETIME_S = 24 * 3600
# 48 random bytes, URL-safe: above the 32 bytes RFC 7518 requires of an HS256 key, and made per run so
# no secret is committed anywhere.
SECRET_BYTES = 48
# Far above what one proxy process can serve (tens of thousands a second), so the limiter counts
# every request and refuses none; its burst defaults to the same count.
NEVER_REFUSING_RATE = "10000000/s"


@dataclass(frozen=True, slots=True)
class Chain:
    """A route's filters (as config) and the shape of the requests sent to every target."""

    name: str
    filters: tuple[Mapping[str, Any], ...]
    headers: tuple[tuple[str, str], ...]
    unique_query: bool
    """Each request gets its own query string (``?n=<count>``), so no two share a cache key."""
    description: str

    @property
    def requests(self) -> str:
        """The requests this chain's load sends, in words."""
        words = "GET /?n=<count> (a query string of its own per request)" if self.unique_query else "GET /"
        for name, _ in self.headers:
            words += f", with an {name} header"
        return words


def mint_token(secret: str, now: float | None = None) -> str:
    """One valid HS256 token for the typical chain's provider."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "iat": issued, "exp": issued + TOKEN_LIFETIME_S}
    return jwt.encode(claims, secret, algorithm="HS256")


def _typical_filters(secret: str, canonical_json: bool = True) -> tuple[Mapping[str, Any], ...]:
    provider = {
        "name": "bench",
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "algorithms": ["HS256"],
        "secret": secret,
    }
    return (
        {"auth_jwt": {"providers": [provider]}},
        {"rate_limit": {"limits": [{"key": "principal", "rate": NEVER_REFUSING_RATE}]}},
        {"cache": {"vary_on": ["principal"], **({} if canonical_json else {"canonical_json": False})}},
    )


def build_chain(name: str, secret: str | None = None) -> Chain:
    """The chain called ``name``; the typical chain's secret is made here unless one is given."""
    if name == "none":
        return Chain(name, (), (), unique_query=False, description="no filters")
    if name == "cache-hit":
        return Chain(
            name,
            ({"cache": {}},),
            (),
            unique_query=False,
            description="cache (memory, default options) alone; the same GET every time, so all but "
            "the first are hits answered without the upstream",
        )
    if name in ("typical", "typical-raw-body"):
        key = secret if secret is not None else secrets.token_urlsafe(SECRET_BYTES)
        raw = name == "typical-raw-body"
        return Chain(
            name,
            _typical_filters(key, canonical_json=not raw),
            (("Authorization", f"Bearer {mint_token(key)}"),),
            unique_query=True,
            description="auth_jwt (HS256, one valid token per request) -> rate_limit (memory, "
            f"{NEVER_REFUSING_RATE} per principal: never refuses) -> cache (memory, per principal; "
            "a query string per request, so every request is looked up, misses and is stored)"
            + ("; the cache keys a JSON body as sent (canonical_json: false)" if raw else ""),
        )
    raise ValueError(f"unknown chain {name!r}: use one of {', '.join(CHAIN_NAMES)}")
