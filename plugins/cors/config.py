"""Options of the CORS filter (the Fetch standard's CORS protocol, answered at the gateway).

Origins are written `scheme://host[:port]`, `*` for any origin, or with a wildcard first label:
`https://*.example.com` (any subdomain, https only) or `*.example.com` (any subdomain, http or
https). A wildcard never matches the bare domain itself.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from gateway.core.config_types import Duration, StrictModel
from plugins._request_headers import check_header_name

ANY = "*"
# Long enough that a browser does not repeat the preflight on every call, short enough that a
# policy change reaches clients within minutes (browsers cap it anyway: Chromium at 2 hours).
_DEFAULT_MAX_AGE = 600.0
_SCHEMES = ("http://", "https://")


def _check_origin(value: str) -> str:
    origin = value.strip().lower().rstrip("/")
    if origin in (ANY, "null"):
        return origin
    rest = origin
    for scheme in _SCHEMES:
        if origin.startswith(scheme):
            rest = origin[len(scheme) :]
            break
    else:
        if not origin.startswith("*."):
            raise ValueError(
                f"invalid origin {value!r}: write scheme://host[:port], like https://app.example.com"
            )
    host = rest[2:] if rest.startswith("*.") else rest
    if not host or "/" in host or "*" in host:
        raise ValueError(
            f"invalid origin {value!r}: a wildcard may only be the first label, like *.example.com"
        )
    return origin


class CorsConfig(StrictModel):
    """`cors`: answer browsers' preflight requests and mark responses readable by allowed origins."""

    allow_origins: tuple[str, ...] = Field(
        default=(ANY,), description="Allowed origins; see the examples above."
    )
    allow_methods: tuple[str, ...] = Field(
        default=("GET", "HEAD", "POST"), min_length=1, description='Allowed methods ("*" for any).'
    )
    allow_headers: tuple[str, ...] = Field(
        default=(ANY,), description='Request headers a page may send ("*": whatever the page asks for).'
    )
    expose_headers: tuple[str, ...] = Field(default=(), description="Response headers a page may read.")
    max_age: Duration = Field(
        default=_DEFAULT_MAX_AGE, description="How long browsers may cache a preflight."
    )
    allow_credentials: bool = Field(
        default=False, description="Let pages send cookies and credentials (needs listed origins, not *)."
    )

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_origin(value) for value in values)

    @field_validator("allow_methods")
    @classmethod
    def _methods(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        methods = tuple(value.strip().upper() for value in values)
        for method in methods:
            if method != ANY and not method.isalpha():
                raise ValueError(f"invalid method {method!r}")
        return methods

    @field_validator("allow_headers", "expose_headers")
    @classmethod
    def _headers(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(value.strip() if value.strip() == ANY else check_header_name(value) for value in values)

    @model_validator(mode="after")
    def _credentials_need_origins(self) -> CorsConfig:
        if self.allow_credentials and ANY in self.allow_origins:
            raise ValueError(
                "allow_credentials with allow_origins '*' would let every site act with the user's "
                "credentials; list the allowed origins"
            )
        return self
