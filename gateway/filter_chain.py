"""A route's filters folded into per-phase lists once, when the route is compiled.

A hook is awaited when it is a coroutine function (`async def`); a plain hook returns its result
directly. The data path asks the chain for each phase only what exists: no empty hook is called,
and each hook is known in advance to be plain or a coroutine, so a chain of plain filters never
leaves the synchronous fast path.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from gateway.core.context import RequestContext
from gateway.core.filters import Decision, Filter, Response

if TYPE_CHECKING:
    from gateway.observability import FastHistogram

log = logging.getLogger("turnout.filters")

RequestHook = Callable[[RequestContext], Any]
ResponseHook = Callable[[RequestContext, Response], Any]
LogHook = Callable[[RequestContext], None]


def _overrides(filter_: Filter, method: str) -> bool:
    return getattr(type(filter_), method) is not getattr(Filter, method)


@dataclass(frozen=True, slots=True)
class Phase:
    """One filter's hook in one phase."""

    filter: Filter
    hook: Callable[..., Any]
    is_async: bool


class FilterTimer(Protocol):
    """Where filter phases report their duration (the gateway's metrics, lock-free histograms)."""

    def filter_histogram(self, route: str, name: str, phase: str) -> FastHistogram: ...


class FilterChain:
    """The compiled filters of one route."""

    __slots__ = (
        "_timers",
        "arm_index",
        "filters",
        "needs_request_body",
        "needs_response_body",
        "on_log",
        "on_request",
        "on_response",
    )

    def __init__(self, filters: Sequence[Filter], route: str = "", timer: FilterTimer | None = None) -> None:
        self.filters = tuple(filters)
        self.on_request = tuple(
            Phase(f, f.on_request, inspect.iscoroutinefunction(f.on_request))
            for f in self.filters
            if _overrides(f, "on_request")
        )
        # Response phases run in reverse order, like unwinding a stack (Envoy's encoder filters).
        self.on_response = tuple(
            Phase(f, f.on_response, inspect.iscoroutinefunction(f.on_response))
            for f in reversed(self.filters)
            if _overrides(f, "on_response")
        )
        self.on_log = tuple(f.on_log for f in self.filters if _overrides(f, "on_log"))
        self.needs_request_body = any(f.needs_request_body for f in self.filters)
        # On an experiment route, the arm is assigned before the first hook that reads it.
        self.arm_index: int | None = next(
            (i for i, phase in enumerate(self.on_request) if phase.filter.needs_experiment_arm), None
        )
        self.needs_response_body = any(f.needs_response_body for f in self.filters)
        self._timers: dict[tuple[str, str], FastHistogram] = {}
        if timer is not None:
            for f in self.filters:
                for phase in ("request", "response"):
                    self._timers[(f.name, phase)] = timer.filter_histogram(route, f.name, phase)

    @property
    def empty(self) -> bool:
        return not self.filters

    def run_request_sync(
        self, ctx: RequestContext, start: int = 0, stop: int | None = None
    ) -> tuple[Decision, int]:
        """Run request hooks from `start` (up to `stop`) until one answers or one must be awaited.
        Returns (answer or None, index of the first hook not run)."""
        hooks = self.on_request
        end = len(hooks) if stop is None else stop
        for index in range(start, end):
            phase = hooks[index]
            if phase.is_async:
                return None, index
            began = time.perf_counter()
            decision = phase.hook(ctx)
            self._observe(phase.filter.name, "request", began)
            if decision is not None:
                return cast(Decision, decision), index + 1
        return None, end

    async def run_request(
        self, ctx: RequestContext, start: int, stop: int | None = None
    ) -> tuple[Decision, int]:
        """Run request hooks from `start` (up to `stop`), awaiting where needed."""
        hooks = self.on_request
        end = len(hooks) if stop is None else stop
        index = start
        while index < end:
            phase = hooks[index]
            began = time.perf_counter()
            decision = phase.hook(ctx)
            if phase.is_async:
                decision = await cast(Awaitable[Decision], decision)
            self._observe(phase.filter.name, "request", began)
            if decision is not None:
                return cast(Decision, decision), index + 1
            index += 1
            decision, index = self.run_request_sync(ctx, index, stop)
            if decision is not None:
                return decision, index
        return None, end

    @property
    def response_is_sync(self) -> bool:
        return not any(p.is_async for p in self.on_response)

    def run_response_sync(self, ctx: RequestContext, response: Response) -> None:
        for phase in self.on_response:
            began = time.perf_counter()
            phase.hook(ctx, response)
            self._observe(phase.filter.name, "response", began)

    async def run_response(self, ctx: RequestContext, response: Response) -> None:
        for phase in self.on_response:
            began = time.perf_counter()
            result = phase.hook(ctx, response)
            if phase.is_async:
                await result
            self._observe(phase.filter.name, "response", began)

    def run_log(self, ctx: RequestContext) -> None:
        for hook in self.on_log:
            try:
                hook(ctx)
            except Exception:  # a logging hook must never break the request it describes
                log.exception("filter logging phase failed")

    def _observe(self, name: str, phase: str, began: float) -> None:
        timer = self._timers.get((name, phase))
        if timer is not None:
            timer.observe(time.perf_counter() - began)

    async def start(self) -> None:
        for f in self.filters:
            await f.start()

    async def stop(self) -> None:
        for f in reversed(self.filters):
            try:
                await f.stop()
            except Exception:
                log.exception("filter %s failed to stop", f.name)
