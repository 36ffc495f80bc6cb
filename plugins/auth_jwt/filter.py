"""JWT authentication: verify the request's token and set its principal and forwarded claims."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import aiohttp
from prometheus_client import Counter

from gateway.core.context import RequestContext
from gateway.core.errors import ServiceUnavailable
from gateway.core.filters import Decision, Filter, Response
from plugins._bearer import BearerChallenge
from plugins.auth_jwt.jwks import JwksKeySet
from plugins.auth_jwt.token_source import TokenSource
from plugins.auth_jwt.verifier import TokenRejected, TokenVerifier, VerifiedToken

DECISIONS = ("allow", "anonymous", "missing", "invalid", "unavailable", "already_authenticated")


class JwtFilter(Filter):
    """Authenticates a request by a signed JWT; answers 401 saying why a token is refused.

    Verified claims are kept in `ctx.state["auth_jwt"]` for the filters after this one. A request
    that an earlier filter already authenticated passes untouched."""

    name = "auth_jwt"
    # Built from its YAML options alone: a reload that leaves them (and the route) unchanged keeps
    # this filter, state included (see gateway/runtime.py, `_chain_key`).
    keeps_state_across_reloads = True
    __slots__ = (
        "_challenge",
        "_count",
        "_forwarded_headers",
        "_missing",
        "_optional",
        "_remote_keys",
        "_session",
        "_source",
        "_verifier",
    )

    def __init__(
        self,
        verifier: TokenVerifier,
        source: TokenSource,
        *,
        remote_keys: list[JwksKeySet],
        forwarded_headers: tuple[str, ...],
        optional: bool,
        realm: str,
        counters: dict[str, Counter],
    ) -> None:
        self._verifier = verifier
        self._source = source
        self._remote_keys = remote_keys
        self._forwarded_headers = forwarded_headers
        self._optional = optional
        self._challenge = BearerChallenge(realm)
        self._missing = self._challenge.missing("a bearer token is required")
        self._count = counters
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._remote_keys:
            self._session = aiohttp.ClientSession()
            await asyncio.gather(*(keys.start(self._session) for keys in self._remote_keys))

    async def stop(self) -> None:
        for keys in reversed(self._remote_keys):
            await keys.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def on_request(self, ctx: RequestContext) -> Decision | Awaitable[Decision]:
        """Plain, so that a token verified before (the usual case: a client sends the same token
        with every request) is admitted without leaving the chain's synchronous fast path; only a
        token not yet remembered returns an awaitable, which verifies it."""
        # Identity headers come only from a verified token, never from the client.
        for header in self._forwarded_headers:
            ctx.headers.pop(header, None)
        token = self._source.take(ctx)  # also removes it from the upstream request, unless forwarded
        if ctx.principal is not None:
            # An earlier authentication filter already knows the caller (a route accepting a key or
            # a token chains both, the first that succeeds decides).
            self._count["already_authenticated"].inc()
            return None
        if token is None:
            if self._optional:
                self._count["anonymous"].inc()
                return None
            self._count["missing"].inc()
            return self._missing.response()
        verified = self._verifier.remembered(token)
        if verified is None:
            return self._verify(ctx, token)
        self._admit(ctx, verified)
        return None

    async def _verify(self, ctx: RequestContext, token: str) -> Decision:
        try:
            verified = await self._verifier.verify(token)
        except TokenRejected as rejected:
            if rejected.unavailable:
                self._count["unavailable"].inc()
                return Response.error(ServiceUnavailable.status, rejected.reason, ServiceUnavailable.code)
            self._count["invalid"].inc()
            return self._challenge.invalid(rejected.reason).response()
        self._admit(ctx, verified)
        return None

    def _admit(self, ctx: RequestContext, verified: VerifiedToken) -> None:
        ctx.principal = verified.principal
        ctx.state[self.name] = verified.claims
        for header, value in verified.forwarded:
            ctx.headers[header] = value
        self._count["allow"].inc()
