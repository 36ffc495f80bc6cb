"""The accepted API keys, indexed by the SHA-256 of the key.

Why an index by hash and not a constant-time scan of every key: the lookup is keyed by the digest
of what the caller sent, never by the caller's bytes themselves. A timing difference in the dict
lookup could at most reveal how much of *the digest of the attacker's own guess* matches a stored
digest, and SHA-256 is preimage resistant, so that reveals nothing about any key: it cannot be used
to build a key byte by byte. The index keeps each request O(1) for any number of keys. The final
equality check still uses `hmac.compare_digest`, so the comparison itself never short-circuits.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from gateway.core.context import Principal
from plugins.auth_apikey.config import ApiKeyEntry

_ENTRIES = TypeAdapter(tuple[ApiKeyEntry, ...])


class ApiKeyStore:
    """Maps a presented key to its principal; holds only digests, never keys."""

    __slots__ = ("_by_digest",)

    def __init__(self, entries: Iterable[ApiKeyEntry]) -> None:
        self._by_digest: dict[bytes, tuple[bytes, Principal]] = {}
        for entry in entries:
            digest = bytes.fromhex(entry.sha256)
            if digest in self._by_digest:
                raise ValueError(f"the key with sha256 {entry.sha256} is listed twice")
            principal = Principal(
                id=entry.principal,
                tenant=entry.tenant,
                scopes=frozenset(entry.scopes),
                tier=entry.tier,
                roles=frozenset(entry.roles),
            )
            self._by_digest[digest] = (digest, principal)

    def __len__(self) -> int:
        return len(self._by_digest)

    def principal_for(self, key: str) -> Principal | None:
        """The principal a key authenticates, or None for an unknown key."""
        digest = hashlib.sha256(key.encode()).digest()
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            return None
        return found[1]


def load_keys_file(path: Path) -> tuple[ApiKeyEntry, ...]:
    """The entries of a keys file (a YAML or JSON list); ValueError naming the file when it is wrong."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read keys_file {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"keys_file {path} is not valid YAML or JSON: {error}") from None
    try:
        return _ENTRIES.validate_python(document if document is not None else ())
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc'])) or 'file'}: {problem['msg']}" for problem in error.errors()
        )
        raise ValueError(f"keys_file {path} is not a list of keys: {problems}") from None
