"""A third-party filter, loaded by import path (`plugin: tests.support.plugins:UPSTREAM_AUTH`),
as a user's own package would provide one: it adds a credential header to upstream requests."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.core.config_types import StrictModel
from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Decision, Filter, Response


class UpstreamAuthConfig(StrictModel):
    api_token: str | None = None
    client_secret: str | None = None
    nested: dict[str, Any] = {}
    audience: str | None = None
    db_password: int | str | None = None
    upstream_tokens: list[str] = []


class UpstreamAuth(Filter):
    def __init__(self, config: UpstreamAuthConfig) -> None:
        self._token = config.api_token or ""

    def on_request(self, ctx: RequestContext) -> Decision:
        ctx.headers["x-upstream-auth"] = self._token
        return None


class UpstreamAuthFactory:
    config_model = UpstreamAuthConfig

    def __call__(self, config: UpstreamAuthConfig, build: BuildContext) -> Filter:
        return UpstreamAuth(config)


UPSTREAM_AUTH = UpstreamAuthFactory()


class GuardConfig(StrictModel):
    header: str = "x-pass"
    delay_ms: int = 0
    """When above 0 the request phase is a coroutine that waits this long before deciding."""


class Guard(Filter):
    """Answers 401 unless a header is present; tags responses; counts what its logging phase saw."""

    def __init__(self, config: GuardConfig) -> None:
        self.header = config.header
        self.logged: list[int] = []

    def on_request(self, ctx: RequestContext) -> Decision:
        if self.header not in ctx.headers:
            return Response.error(401, f"missing {self.header}", "unauthorized")
        return None

    def on_response(self, ctx: RequestContext, response: Response) -> None:
        response.set_header("x-guarded", "yes")

    def on_log(self, ctx: RequestContext) -> None:
        self.logged.append(ctx.status)


class AsyncGuard(Guard):
    def __init__(self, config: GuardConfig) -> None:
        super().__init__(config)
        self.delay = config.delay_ms / 1000

    async def on_request(self, ctx: RequestContext) -> Decision:  # type: ignore[override]
        await asyncio.sleep(self.delay)
        return Guard.on_request(self, ctx)


class BodyUpper(Filter):
    """Rewrites the request body to upper case and appends a marker to the response body."""

    needs_request_body = True
    needs_response_body = True

    def on_request(self, ctx: RequestContext) -> Decision:
        ctx.body = (ctx.body or b"").upper()
        return None

    def on_response(self, ctx: RequestContext, response: Response) -> None:
        response.body = (response.body or b"") + b"\n-- seen by body_upper"


class _Factory:
    def __init__(self, config_model: type[StrictModel], build: Any) -> None:
        self.config_model = config_model
        self._build = build

    def __call__(self, config: Any, build: BuildContext) -> Filter:
        return self._build(config)  # type: ignore[no-any-return]


class _NoConfig(StrictModel):
    pass


GUARD = _Factory(GuardConfig, Guard)
ASYNC_GUARD = _Factory(GuardConfig, AsyncGuard)
BODY_UPPER = _Factory(_NoConfig, lambda config: BodyUpper())
