"""Verifying one token: choose its provider, check its algorithm, find its key, check its claims.

Every refusal says precisely why, in words chosen here: nothing read from the token is echoed back,
since the reason goes into a response header and a token's fields are attacker-controlled.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from jwt import exceptions as jwt_errors

from gateway.core.context import Principal
from plugins.auth_jwt.claims import ClaimMapping, MissingPrincipalClaim, non_numeric_date
from plugins.auth_jwt.config import JwtProvider
from plugins.auth_jwt.keys import KeySource


class TokenRejected(Exception):
    """A token that cannot be accepted; `unavailable` when the fault is ours (no keys yet)."""

    def __init__(self, reason: str, *, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unavailable = unavailable


@dataclass(frozen=True, slots=True)
class SigningKeyUse:
    """The key a token was verified with and where it came from. A remembered verification holds
    only while its source still finds that same key for the token's kid and algorithm: once a JWKS
    refresh drops (or replaces) the key, the token is verified again, and refused if it must be."""

    source: KeySource
    kid: str | None
    alg: str
    key: Any

    def current(self) -> bool:
        return self.source.find(self.kid, self.alg) is self.key


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    claims: dict[str, Any]
    principal: Principal
    forwarded: list[tuple[str, str]]
    signed_with: SigningKeyUse


# Most specific first: several of PyJWT's errors derive from others (an expired token is an
# InvalidTokenError; a bad signature is a DecodeError).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt_errors.ExpiredSignatureError, "the token has expired"),
    (jwt_errors.InvalidAudienceError, "the token is not meant for this audience"),
    (jwt_errors.InvalidIssuerError, "the token's issuer is not trusted"),
    (jwt_errors.InvalidSignatureError, "the token's signature does not verify"),
    (jwt_errors.InvalidAlgorithmError, "the token's algorithm is not accepted"),
    (jwt_errors.InvalidKeyError, "the signing key does not suit the token's algorithm"),
    (jwt_errors.InvalidIssuedAtError, "the token's iat claim is not a number"),
    (jwt_errors.InvalidTokenError, "the token is malformed"),
)
_IMMATURE_BY_IAT = "(iat)"  # PyJWT's message for an iat in the future, as opposed to an nbf


def _reason(error: jwt_errors.PyJWTError) -> str:
    if isinstance(error, jwt_errors.MissingRequiredClaimError):
        return f"the token has no '{error.claim}' claim"
    if isinstance(error, jwt_errors.ImmatureSignatureError):
        if _IMMATURE_BY_IAT in str(error):
            return "the token was issued in the future (iat)"
        return "the token is not valid yet (nbf)"
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "the token is malformed"


class ProviderVerifier:
    """Verifies tokens of one provider."""

    __slots__ = (
        "_algorithms",
        "_allow_list",
        "_audiences",
        "_claims",
        "_decoder",
        "_issuer",
        "_keys",
        "_leeway",
        "_options",
    )

    def __init__(self, provider: JwtProvider, keys: KeySource) -> None:
        self._algorithms = frozenset(provider.algorithms)
        self._allow_list = sorted(self._algorithms)
        self._keys = keys
        self._issuer = provider.issuer
        self._audiences = list(provider.audiences)
        self._leeway = provider.leeway
        self._claims = ClaimMapping(provider)
        self._decoder = jwt.PyJWT()
        self._options: Any = {
            "require": list(provider.required_claims),
            # Refuse short HMAC secrets and small RSA keys instead of warning about them.
            "enforce_minimum_key_length": True,
        }

    async def verify(self, token: str, header: Mapping[str, Any]) -> VerifiedToken:
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise TokenRejected("the token names no algorithm")
        if alg.lower() == "none":
            raise TokenRejected("unsigned tokens (alg none) are refused")
        if alg not in self._algorithms:
            raise TokenRejected("the token's algorithm is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("the token's kid is not a string")
        key = await self._key(kid, alg)
        try:
            claims = self._decoder.decode(
                token,
                key,
                algorithms=self._allow_list,
                audience=self._audiences,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,
            )
        except jwt_errors.PyJWTError as error:
            raise TokenRejected(_reason(error)) from None
        not_a_number = non_numeric_date(claims)
        if not_a_number is not None:
            raise TokenRejected(f"the token's {not_a_number} claim is not a number")
        try:
            principal = self._claims.principal(claims)
        except MissingPrincipalClaim as error:
            raise TokenRejected(str(error)) from None
        return VerifiedToken(
            claims, principal, self._claims.forwarded(claims), SigningKeyUse(self._keys, kid, alg, key)
        )

    async def _key(self, kid: str | None, alg: str) -> Any:
        keys = self._keys
        key = keys.find(kid, alg)
        if key is not None:
            return key
        if kid is None:
            raise TokenRejected("the token names no key id (kid)")
        if await keys.refresh_for_unknown_kid():
            key = keys.find(kid, alg)
            if key is not None:
                return key
        if not keys.loaded:
            raise TokenRejected("the identity provider's signing keys are not available", unavailable=True)
        raise TokenRejected("the token's signing key (kid) is unknown")


def unverified_issuer(token: str) -> str | None:
    """The `iss` of a token before verification: only to choose which provider verifies it."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1]
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except ValueError:
        return None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) else None


# A client sends the same token with every request, and checking a signature costs tens of
# microseconds: a verified token is remembered for up to 30 s, never past its own exp, and never
# once its key has left the key set (`SigningKeyUse`).
VERIFIED_CACHE_TTL_S = 30.0
# Enough for the distinct tokens of a busy gateway's last half-minute, small enough to stay cheap.
VERIFIED_CACHE_ENTRIES = 10_000


class TokenVerifier:
    """Verifies a token with the provider of its issuer."""

    __slots__ = ("_by_issuer", "_cache", "_only")

    def __init__(self, providers: list[tuple[JwtProvider, ProviderVerifier]]) -> None:
        self._by_issuer = {provider.issuer: verifier for provider, verifier in providers}
        # With one provider there is nothing to choose: skip reading the payload twice.
        self._only = providers[0][1] if len(providers) == 1 else None
        self._cache: dict[str, tuple[VerifiedToken, float]] = {}

    def forget(self) -> None:
        """Drop remembered verifications (keys changed in a way that must take effect now)."""
        self._cache.clear()

    def remembered(self, token: str) -> VerifiedToken | None:
        """The token's verification when one is remembered and still holds; None otherwise. Plain,
        so that the filter answers a returning token without leaving the synchronous fast path."""
        remembered = self._cache.get(token)
        if remembered is not None and time.time() < remembered[1]:
            verified = remembered[0]
            if verified.signed_with.current():
                return verified
        return None

    async def verify(self, token: str) -> VerifiedToken:
        remembered = self.remembered(token)
        if remembered is not None:
            return remembered
        now = time.time()
        verified = await self._verify(token)
        until = now + VERIFIED_CACHE_TTL_S
        exp = verified.claims.get("exp")
        if isinstance(exp, int | float) and exp < until:
            until = float(exp)  # below a float, so it converts (an int of any size compares exactly)
        if len(self._cache) >= VERIFIED_CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))  # the oldest entry
        self._cache[token] = (verified, until)
        return verified

    async def _verify(self, token: str) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.PyJWTError:
            raise TokenRejected("the token is malformed") from None
        verifier = self._only
        if verifier is None:
            issuer = unverified_issuer(token)
            verifier = None if issuer is None else self._by_issuer.get(issuer)
            if verifier is None:
                raise TokenRejected("the token's issuer is not trusted")
        return await verifier.verify(token, header)
