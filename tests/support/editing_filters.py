"""Third-party filters that use the public contract, loaded by import path
(`plugin: tests.support.editing_filters:EDITOR`): they edit the request the upstream receives and the
answer the client receives, through `ctx.headers`, `ctx.path`, `ctx.query` and `Response` alone.
"""

from __future__ import annotations

from collections.abc import Awaitable

from gateway.core.config_types import StrictModel
from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Decision, Filter, Response


class EditConfig(StrictModel):
    set: dict[str, str] = {}
    """Request headers to add or replace."""
    remove: list[str] = []
    """Request headers to remove."""
    path: str | None = None
    query: str | None = None
    status: int | None = None
    """A new status for the answer the client receives."""
    answer_header: str | None = None
    """Set `x-edited: <this>` on the answer the client receives."""
    deferred: bool = False
    """Plain methods that return coroutines instead of doing the work at once."""


class Editor(Filter):
    def __init__(self, config: EditConfig) -> None:
        self.config = config
        self.invalidated: list[str | None] = []

    def on_request(self, ctx: RequestContext) -> Decision | Awaitable[Decision]:
        if self.config.deferred:
            return self._edit_request_later(ctx)
        self._edit_request(ctx)
        return None

    def on_response(self, ctx: RequestContext, response: Response) -> Awaitable[None] | None:
        if self.config.deferred:
            return self._edit_response_later(response)
        self._edit_response(response)
        return None

    async def _edit_request_later(self, ctx: RequestContext) -> Decision:
        self._edit_request(ctx)
        return None

    async def _edit_response_later(self, response: Response) -> None:
        self._edit_response(response)

    def _edit_request(self, ctx: RequestContext) -> None:
        for name, value in self.config.set.items():
            ctx.headers[name] = value
        for name in self.config.remove:
            ctx.headers.pop(name, None)
        if self.config.path is not None:
            ctx.path = self.config.path
        if self.config.query is not None:
            ctx.query = self.config.query

    def _edit_response(self, response: Response) -> None:
        if self.config.status is not None:
            response.status = self.config.status
        if self.config.answer_header is not None:
            response.set_header("x-edited", self.config.answer_header)


class CachingEditor(Editor):
    """Declares the cache-invalidation capability: the admin API's invalidation reaches it."""

    async def invalidate(self, model: str | None) -> int:
        self.invalidated.append(model)
        return 3


class EditorFactory:
    config_model = EditConfig

    def __init__(self, kind: type[Editor]) -> None:
        self.kind = kind

    def __call__(self, config: EditConfig, build: BuildContext) -> Filter:
        return self.kind(config)


EDITOR = EditorFactory(Editor)
CACHING_EDITOR = EditorFactory(CachingEditor)
