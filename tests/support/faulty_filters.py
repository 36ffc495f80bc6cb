"""A third-party filter with a bug on purpose, loaded by import path
(`plugin: tests.support.faulty_filters:FAULTY`): it raises in the phase its config names.

`mode` says how the failing hook is declared: `sync` (a plain method that raises), `async`
(`async def` that raises after a first await) or `awaitable` (a plain method returning a coroutine
that raises). Request and response hooks fail only for paths under `path`, so the same gateway keeps
serving other requests; every logging phase that runs records the status it saw.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from typing import Literal

from gateway.core.config_types import StrictModel
from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Decision, Filter, Response


class FaultConfig(StrictModel):
    phase: Literal["request", "response", "log", "start", "stop", "header"] = "request"
    """Where to raise; "header" raises nothing but sets a response header that HTTP cannot carry."""
    mode: Literal["sync", "async", "awaitable"] = "sync"
    path: str = "/boom"
    buffer: bool = False
    """Ask for the response body, so the answer is buffered instead of streamed."""
    start_fails_while: str | None = None
    """With phase "start": start raises only while this file exists."""
    keeps_state: bool = False
    """Say `keeps_state_across_reloads`, so an unchanged reload may keep the chain."""


class FilterBug(RuntimeError):
    """What the faulty filter raises: nothing the gateway could know of."""


class _Faulty(Filter):
    def __init__(self, config: FaultConfig) -> None:
        self.phase = config.phase
        self.path = config.path
        self.start_fails_while = config.start_fails_while
        self.keeps_state_across_reloads = config.keeps_state
        self.logged: list[int] = []

    def _fails(self, phase: str, ctx: RequestContext) -> bool:
        return self.phase == phase and ctx.path.startswith(self.path)

    def on_log(self, ctx: RequestContext) -> None:
        if self._fails("log", ctx):
            raise FilterBug("on_log broke")
        self.logged.append(ctx.status)

    def _start_fails(self) -> bool:
        return self.phase == "start" and (
            self.start_fails_while is None or os.path.exists(self.start_fails_while)
        )

    async def start(self) -> None:
        if self._start_fails():
            raise FilterBug("start broke")

    async def stop(self) -> None:
        if self.phase == "stop":
            raise FilterBug("stop broke")


class SyncFaulty(_Faulty):
    def on_request(self, ctx: RequestContext) -> Decision:
        if self._fails("request", ctx):
            raise FilterBug("on_request broke")
        return None

    def on_response(self, ctx: RequestContext, response: Response) -> None:
        if self._fails("response", ctx):
            raise FilterBug("on_response broke")
        response.set_header("x-faulty", "\u2603" if self._fails("header", ctx) else "passed")


class AsyncFaulty(_Faulty):
    async def on_request(self, ctx: RequestContext) -> Decision:
        await asyncio.sleep(0)
        if self._fails("request", ctx):
            raise FilterBug("on_request broke")
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> None:
        await asyncio.sleep(0)
        if self._fails("response", ctx):
            raise FilterBug("on_response broke")
        response.set_header("x-faulty", "passed")


class AwaitableFaulty(_Faulty):
    """Plain methods that return coroutines: awaited all the same."""

    def on_request(self, ctx: RequestContext) -> Awaitable[Decision]:
        return AsyncFaulty.on_request(self, ctx)  # type: ignore[arg-type]

    def on_response(self, ctx: RequestContext, response: Response) -> Awaitable[None]:
        return AsyncFaulty.on_response(self, ctx, response)  # type: ignore[arg-type]


_CLASSES: dict[tuple[str, bool], type[_Faulty]] = {}
for _mode, _base in (("sync", SyncFaulty), ("async", AsyncFaulty), ("awaitable", AwaitableFaulty)):
    _CLASSES[(_mode, False)] = _base
    _CLASSES[(_mode, True)] = type(f"Buffered{_base.__name__}", (_base,), {"needs_response_body": True})


class FaultyFactory:
    config_model = FaultConfig

    def __call__(self, config: FaultConfig, build: BuildContext) -> Filter:
        return _CLASSES[(config.mode, config.buffer)](config)


FAULTY = FaultyFactory()
