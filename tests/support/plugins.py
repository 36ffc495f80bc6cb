"""A third-party filter, loaded by import path (`plugin: tests.support.plugins:UPSTREAM_AUTH`),
as a user's own package would provide one: it adds a credential header to upstream requests."""

from __future__ import annotations

from typing import Any

from gateway.core.config_types import StrictModel
from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Decision, Filter


class UpstreamAuthConfig(StrictModel):
    api_token: str | None = None
    client_secret: str | None = None
    nested: dict[str, Any] = {}
    audience: str | None = None
    db_password: int | str | None = None
    upstream_tokens: list[str] = []


class UpstreamAuth(Filter):
    def __init__(self, config: UpstreamAuthConfig) -> None:
        self._header = [("x-upstream-auth", config.api_token or "")]

    def on_request(self, ctx: RequestContext) -> Decision:
        ctx.state["add_request_headers"] = self._header
        return None


class UpstreamAuthFactory:
    config_model = UpstreamAuthConfig

    def __call__(self, config: UpstreamAuthConfig, build: BuildContext) -> Filter:
        return UpstreamAuth(config)


UPSTREAM_AUTH = UpstreamAuthFactory()
