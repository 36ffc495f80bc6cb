"""API-key authentication: find the key in the configured headers and set the request's principal."""

from __future__ import annotations

from prometheus_client import Counter

from gateway.core.context import RequestContext
from gateway.core.filters import Decision, Filter
from plugins._bearer import BearerChallenge
from plugins.auth_apikey.config import AUTHORIZATION
from plugins.auth_apikey.keystore import ApiKeyStore

DECISIONS = ("allow", "anonymous", "missing", "invalid", "already_authenticated")
_BEARER = "bearer"


def _bearer_token(value: str) -> str | None:
    """The credential of `Authorization: Bearer <credential>` (the scheme is case-insensitive)."""
    scheme, _, credential = value.strip().partition(" ")
    if scheme.lower() != _BEARER:
        return None
    return credential.strip() or None


class ApiKeyFilter(Filter):
    """Authenticates a request by an API key; answers 401 when the key is missing or unknown.

    A request that an earlier filter already authenticated passes untouched."""

    name = "auth_apikey"
    __slots__ = (
        "_challenge_invalid",
        "_challenge_missing",
        "_count",
        "_forward",
        "_optional",
        "_sources",
        "_store",
        "keeps_state_across_reloads",
    )

    def __init__(
        self,
        store: ApiKeyStore,
        sources: tuple[str, ...],
        *,
        optional: bool,
        forward_credentials: bool,
        realm: str,
        counters: dict[str, Counter],
        keys_from_config_only: bool = True,
    ) -> None:
        # A keys_file is read when the filter is built: only a filter whose keys are all in the
        # config may outlive a reload, else a reload would miss a rotated file.
        self.keeps_state_across_reloads = keys_from_config_only
        self._store = store
        self._sources = sources
        self._optional = optional
        self._forward = forward_credentials
        challenge = BearerChallenge(realm)
        self._challenge_missing = challenge.missing("an API key is required")
        self._challenge_invalid = challenge.invalid("the API key is not valid")
        self._count = counters

    def on_request(self, ctx: RequestContext) -> Decision:
        key = self._take_key(ctx)  # also removes it from the upstream request, unless forwarded
        if ctx.principal is not None:
            # An earlier authentication filter of the route already knows the caller: routes that
            # accept a token or a key chain both filters, and the first that succeeds decides.
            self._count["already_authenticated"].inc()
            return None
        if key is None:
            if self._optional:
                self._count["anonymous"].inc()
                return None
            self._count["missing"].inc()
            return self._challenge_missing.response()
        principal = self._store.principal_for(key)
        if principal is None:
            self._count["invalid"].inc()
            return self._challenge_invalid.response()
        ctx.principal = principal
        self._count["allow"].inc()
        return None

    def _take_key(self, ctx: RequestContext) -> str | None:
        """The first key found in the sources, in order; headers that carried one are stripped
        from the upstream request unless credentials are forwarded."""
        found: str | None = None
        headers = ctx.headers
        for source in self._sources:
            raw = headers.get(source)
            if raw is None:
                continue
            key = _bearer_token(raw) if source == AUTHORIZATION else (raw.strip() or None)
            if key is None:
                continue  # e.g. "Authorization: Basic ...": not a credential for this filter
            if found is None:
                found = key
            if not self._forward:
                ctx.headers.pop(source, None)
        return found
