"""Builds a `JwtFilter`: one verifier per provider, over its inline keys, secret or JWKS URL."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.core.filters import BuildContext, Filter
from plugins._metrics import counter, decision_counters
from plugins.auth_jwt.config import JwtConfig, JwtProvider
from plugins.auth_jwt.filter import DECISIONS, JwtFilter
from plugins.auth_jwt.jwks import JwksKeySet
from plugins.auth_jwt.keys import KeySource, SecretKey, SigningKeys, StaticKeys
from plugins.auth_jwt.token_source import TokenSource
from plugins.auth_jwt.verifier import ProviderVerifier, TokenVerifier

_JWKS_FETCHES = "turnout_jwks_fetches"
_JWKS_FETCHES_DOC = "JWKS fetches of JWT providers, by route, provider and result"
_JWKS_FETCH_LABELS = ("route", "provider", "result")
_JWKS_FETCH_RESULTS = ("ok", "error")


class JwtFilterFactory:
    """The `auth_jwt` filter factory."""

    __slots__ = ()
    config_model: type[BaseModel] = JwtConfig

    def __call__(self, config: JwtConfig, build: BuildContext) -> Filter:
        remote: list[JwksKeySet] = []
        verifiers: list[tuple[JwtProvider, ProviderVerifier]] = []
        for provider in config.providers:
            keys = self._keys(provider, build, remote)
            verifiers.append((provider, ProviderVerifier(provider, keys)))
        forwarded = tuple(
            sorted({header for provider in config.providers for header in provider.forward_claims.values()})
        )
        return JwtFilter(
            TokenVerifier(verifiers),
            TokenSource(
                cookie=config.cookie, query_param=config.query_param, forward_token=config.forward_token
            ),
            remote_keys=remote,
            forwarded_headers=forwarded,
            optional=config.optional,
            realm=config.realm,
            counters=decision_counters(build.registry, JwtFilter.name, build.route, DECISIONS),
        )

    @staticmethod
    def _keys(provider: JwtProvider, build: BuildContext, remote: list[JwksKeySet]) -> KeySource:
        if provider.secret is not None:
            return SecretKey(provider.secret.get_secret_value())
        if provider.jwks is not None:
            keys, _ = SigningKeys.from_jwks(provider.jwks, provider.algorithms)  # checked by the config model
            return StaticKeys(keys)
        if provider.jwks_url is None:  # the config model requires one key source; this keeps mypy sure
            raise ValueError(f"provider {provider.name} has no key source")
        family = counter(build.registry, _JWKS_FETCHES, _JWKS_FETCHES_DOC, _JWKS_FETCH_LABELS)
        key_set = JwksKeySet(
            provider.jwks_url,
            provider.algorithms,
            refresh_interval=provider.jwks_refresh_interval,
            min_refresh_interval=provider.jwks_min_refresh_interval,
            timeout=provider.jwks_timeout,
            fetch_results={
                result: family.labels(build.route, provider.name, result) for result in _JWKS_FETCH_RESULTS
            },
        )
        remote.append(key_set)
        return key_set
