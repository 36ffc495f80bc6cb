"""Verification keys of one provider, looked up by the token's key id (`kid`) and algorithm.

A key is bound to one algorithm when the key set is built, never when a token arrives: an RSA key
is prepared only for the RS* algorithms the provider allows, an EC key only for the ES* algorithm
of its curve. A token naming an algorithm its key was not prepared for finds no key at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidKeyError, PyJWTError


class SigningKeys:
    """An immutable set of verification keys, by (kid, algorithm) and by algorithm alone."""

    __slots__ = ("_by_alg", "_by_kid")

    def __init__(self, by_kid: dict[tuple[str, str], Any], by_alg: dict[str, list[Any]]) -> None:
        self._by_kid = by_kid
        self._by_alg = by_alg

    def find(self, kid: str | None, alg: str) -> Any | None:
        """The key for a token's kid and alg. A token without a kid is accepted only when the set
        holds exactly one key for its algorithm, so that the choice is never ambiguous."""
        if kid is not None:
            return self._by_kid.get((kid, alg))
        candidates = self._by_alg.get(alg)
        return candidates[0] if candidates is not None and len(candidates) == 1 else None

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_alg.values())

    @classmethod
    def from_jwks(cls, document: Any, algorithms: Iterable[str]) -> tuple[SigningKeys, list[str]]:
        """The usable keys of a JWKS document, and a note for each entry that is not a key at all."""
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            return cls({}, {}), ['a JWKS document is an object {"keys": [...]}']
        allowed = tuple(algorithms)
        implementations = get_default_algorithms()
        by_kid: dict[tuple[str, str], Any] = {}
        by_alg: dict[str, list[Any]] = {}
        problems: list[str] = []
        for index, jwk in enumerate(document["keys"]):
            if not isinstance(jwk, Mapping):
                problems.append(f"key {index} is not an object")
                continue
            kid = jwk.get("kid")
            if jwk.get("use", "sig") != "sig":
                continue  # an encryption key published beside the signing keys
            # A key that suits none of the allowed algorithms is skipped without a word: a JWKS often
            # publishes keys for algorithms this route does not accept.
            for alg in allowed:
                if jwk.get("alg", alg) != alg:
                    continue  # the key declares another algorithm: never use it for this one
                key = _prepare(implementations[alg], jwk)
                if key is None:
                    continue
                by_alg.setdefault(alg, []).append(key)
                if isinstance(kid, str):
                    by_kid[(kid, alg)] = key
        return cls(by_kid, by_alg), problems


def _prepare(implementation: Any, jwk: Mapping[str, Any]) -> Any | None:
    """The public key of `jwk` prepared for one algorithm, or None when the key does not suit it."""
    try:
        key = implementation.from_jwk(dict(jwk))
        if hasattr(key, "private_bytes"):
            key = key.public_key()  # a JWKS should hold public keys; verify with the public half only
        return implementation.prepare_key(key)
    except (InvalidKeyError, PyJWTError, ValueError, TypeError, KeyError):
        return None


class KeySource(Protocol):
    """Where a provider's verification keys come from: inline, a secret, or a JWKS URL."""

    @property
    def loaded(self) -> bool:
        """False until a key set was obtained at least once (a JWKS that could not be fetched yet)."""
        ...

    def find(self, kid: str | None, alg: str) -> Any | None: ...

    async def refresh_for_unknown_kid(self) -> bool:
        """Fetch the keys again if the rate limit allows; True when the key set may have changed."""
        ...


class StaticKeys:
    """Keys that never change (an inline JWKS): nothing to fetch, nothing to refresh."""

    __slots__ = ("_keys",)

    def __init__(self, keys: SigningKeys) -> None:
        self._keys = keys

    @property
    def loaded(self) -> bool:
        return True

    def find(self, kid: str | None, alg: str) -> Any | None:
        return self._keys.find(kid, alg)

    async def refresh_for_unknown_kid(self) -> bool:
        return False


class SecretKey:
    """A shared HMAC secret: the one key of every HS* token of its provider, whatever its kid."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    @property
    def loaded(self) -> bool:
        return True

    def find(self, kid: str | None, alg: str) -> Any | None:
        return self._secret

    async def refresh_for_unknown_kid(self) -> bool:
        return False
