"""Options of the API-key authentication filter.

Keys are configured only as the SHA-256 of the key, in hex: a leaked config file or keys file does
not leak working keys. `printf %s "$KEY" | sha256sum` gives the value to write.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from gateway.core.config_types import StrictModel
from plugins._request_headers import HeaderName, HeaderValue

_HEX_DIGITS = frozenset("0123456789abcdef")
_SHA256_HEX_LENGTH = 64  # 32 bytes of digest, two hex digits each

AUTHORIZATION = "authorization"
"""The source that reads `Authorization: Bearer <key>`; any other source is a header holding the key."""


class ApiKeyEntry(StrictModel):
    """One accepted key (by its hash) and the principal it authenticates."""

    sha256: str = Field(description="The SHA-256 of the key, 64 hex digits; never the key itself.")
    principal: str = Field(min_length=1, description="The principal id the key authenticates.")
    tenant: str | None = Field(default=None, description="The principal's tenant.")
    scopes: tuple[str, ...] = Field(default=(), description="Scopes granted to the principal.")
    tier: str | None = Field(default=None, description="The principal's tier (for rate limits).")
    roles: tuple[str, ...] = Field(default=(), description="Roles granted to the principal.")

    @field_validator("sha256")
    @classmethod
    def _is_sha256_hex(cls, value: str) -> str:
        digest = value.strip().lower()
        if len(digest) != _SHA256_HEX_LENGTH or not set(digest) <= _HEX_DIGITS:
            raise ValueError("expected the SHA-256 of the key as 64 hex digits (printf %s KEY | sha256sum)")
        return digest


class ApiKeyConfig(StrictModel):
    """`auth_apikey`: authenticate callers by a key sent in a header."""

    keys: tuple[ApiKeyEntry, ...] = Field(default=(), description="Accepted keys, by hash.")
    keys_file: str | None = Field(
        default=None,
        description="A YAML or JSON file with a list of keys in the same shape as `keys`, "
        "relative to the config file.",
    )
    sources: tuple[HeaderName, ...] = Field(
        default=(AUTHORIZATION, "x-api-key"),
        min_length=1,
        description='Headers to read the key from, in order: "authorization" reads a Bearer token; '
        "any other header holds the key itself.",
    )
    optional: bool = Field(
        default=False,
        description="Let requests without a key continue anonymously (a wrong key is still refused).",
    )
    forward_credentials: bool = Field(
        default=False, description="Send the key upstream; by default its header is removed."
    )
    realm: HeaderValue = Field(default="turnout", description="The realm named in WWW-Authenticate.")

    @model_validator(mode="after")
    def _has_keys(self) -> ApiKeyConfig:
        if not self.keys and self.keys_file is None:
            raise ValueError("give the accepted keys in `keys`, `keys_file`, or both")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError("`sources` lists a header twice")
        return self
