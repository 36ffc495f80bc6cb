"""Options of the JWT authentication filter: the trusted token issuers and where tokens are read.

Each provider names its algorithms explicitly. A provider keyed by a shared secret allows only HS*
algorithms and one keyed by public keys (a JWKS) only asymmetric ones, so a token can never choose
to have an RSA public key used as an HMAC secret (the classic algorithm-confusion attack).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from gateway.core.config_types import Duration, StrictModel
from plugins._request_headers import HeaderName, HeaderValue
from plugins._urls import is_http_url
from plugins.auth_jwt.keys import SigningKeys

Algorithm = Literal["RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
# RFC 7518 section 3.2: an HMAC key must be at least as long as the hash output.
_MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# A token without an expiry stays valid forever; requiring `exp` is the safe default.
_DEFAULT_REQUIRED_CLAIMS = ("exp",)


class JwtProvider(StrictModel):
    """One trusted issuer: how its tokens are verified and how their claims map to a principal."""

    name: str = Field(min_length=1, description="A name for this provider, used in logs and metrics.")
    issuer: str = Field(min_length=1, description="The exact `iss` claim of this provider's tokens.")
    audiences: tuple[str, ...] = Field(
        min_length=1, description="Accepted `aud` values: a token must name at least one of them."
    )
    algorithms: tuple[Algorithm, ...] = Field(
        default=("RS256",), min_length=1, description="The signature algorithms accepted (an allow-list)."
    )
    jwks_url: str | None = Field(default=None, description="Where to fetch the provider's public keys.")
    jwks: dict[str, Any] | None = Field(default=None, description="The provider's public keys, inline.")
    secret: SecretStr | None = Field(
        default=None, description="The shared secret for HS* algorithms; write it as ${VAR}."
    )
    leeway: Duration = Field(default=30.0, description="Clock skew tolerated for exp, nbf and iat.")
    required_claims: tuple[str, ...] = Field(
        default=_DEFAULT_REQUIRED_CLAIMS, description="Claims every token must carry."
    )
    principal_claim: str = Field(default="sub", description="The claim holding the principal id.")
    tenant_claim: str | None = Field(default=None, description="The claim holding the tenant.")
    scopes_claim: str | None = Field(
        default="scope", description="The claim holding scopes: a space-separated string or a list."
    )
    tier_claim: str | None = Field(default=None, description="The claim holding the tier.")
    roles_claim: str | None = Field(
        default=None, description="The claim holding roles: a list or a space-separated string."
    )
    forward_claims: dict[str, HeaderName] = Field(
        default_factory=dict,
        description="Claims sent upstream as headers, {claim: header}; client-sent copies are removed.",
    )
    jwks_refresh_interval: Duration = Field(
        default=300.0, gt=0, description="How often the JWKS is fetched again in the background."
    )
    jwks_min_refresh_interval: Duration = Field(
        default=30.0,
        gt=0,
        description="The least time between two JWKS fetches, also when a token names an unknown key.",
    )
    jwks_timeout: Duration = Field(default=5.0, gt=0, description="How long one JWKS fetch may take.")

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtProvider:
        sources = [name for name in ("jwks_url", "jwks", "secret") if getattr(self, name) is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of jwks_url, jwks (inline) or secret")
        hmac_algs = [alg for alg in self.algorithms if alg in HMAC_ALGORITHMS]
        if self.secret is not None:
            if len(hmac_algs) != len(self.algorithms):
                raise ValueError("a provider with a secret accepts only HS256, HS384 or HS512")
            length = len(self.secret.get_secret_value().encode())
            for alg in hmac_algs:
                if length < _MIN_SECRET_BYTES[alg]:
                    raise ValueError(f"the secret for {alg} must be at least {_MIN_SECRET_BYTES[alg]} bytes")
        elif hmac_algs:
            raise ValueError(
                "HS* algorithms need a secret; a provider with public keys accepts only RS, ES, EdDSA"
            )
        if self.jwks is not None:
            keys, problems = SigningKeys.from_jwks(self.jwks, self.algorithms)
            if problems or not len(keys):
                detail = "; ".join(problems) or f"no key suits {', '.join(self.algorithms)}"
                raise ValueError(f"the inline jwks is not usable: {detail}")
        if self.jwks_url is not None and not is_http_url(self.jwks_url):
            raise ValueError("jwks_url must be an http:// or https:// URL with a host")
        if self.jwks_min_refresh_interval > self.jwks_refresh_interval:
            raise ValueError("jwks_min_refresh_interval cannot exceed jwks_refresh_interval")
        if len(set(self.forward_claims.values())) != len(self.forward_claims):
            raise ValueError("forward_claims sends two claims in the same header")
        return self


class JwtConfig(StrictModel):
    """`auth_jwt`: authenticate callers by signed JSON Web Tokens."""

    providers: tuple[JwtProvider, ...] = Field(min_length=1, description="The trusted token issuers.")
    cookie: str | None = Field(
        default=None, min_length=1, description="Also read the token from this cookie."
    )
    query_param: str | None = Field(
        default=None, min_length=1, description="Also read the token from this query parameter."
    )
    optional: bool = Field(
        default=False,
        description="Let requests without a token continue anonymously (a bad token is still refused).",
    )
    forward_token: bool = Field(
        default=False, description="Send the token upstream; by default it is removed."
    )
    realm: HeaderValue = Field(default="turnout", description="The realm named in WWW-Authenticate.")

    @model_validator(mode="after")
    def _distinct_providers(self) -> JwtConfig:
        issuers = [provider.issuer for provider in self.providers]
        if len(set(issuers)) != len(issuers):
            raise ValueError("two providers have the same issuer; a token could not tell them apart")
        names = [provider.name for provider in self.providers]
        if len(set(names)) != len(names):
            raise ValueError("two providers have the same name")
        return self
