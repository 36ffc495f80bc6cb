"""A route's filters folded into per-phase lists once, when the route is compiled.

The data path asks the chain for each phase only what exists: no empty hook is called. A hook is
awaited when what it returns is awaitable, whatever its declaration; a hook declared `async def` is
known to need it in advance, so the synchronous runners stop before it and a chain of plain filters
never leaves the synchronous fast path.

Every exception a hook raises is contained here: a `GatewayError` is the filter's deliberate answer
and passes through; anything else is a bug in that filter, counted in
`turnout_filter_errors_total{route,filter,phase}` and raised as a `FilterError` that names it, which
the data path turns into a 500 (or a closed connection). A logging, start or stop hook that fails is
logged and counted; a filter that failed to start makes its route answer with that error.

With tracing on, the chain runs the tracing hook (gateway/tracing.py) before every request hook and
after every logging hook, and each timed hook of a traced request becomes a child span; with
tracing off the chain holds no such hook and a timed hook costs one `ctx.trace` test more.

Each hook's duration goes to its histogram (`turnout_filter_duration_seconds`), which the hook's
`Phase` holds, resolved when the route is compiled. The synchronous runners read the clock once per
hook: where one hook ends the next begins.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.core.filters import Decision, Filter, FilterError, Response

if TYPE_CHECKING:
    from gateway.observability import FastHistogram

log = logging.getLogger("turnout.filters")

PHASES = ("request", "response", "log", "start", "stop", "upstream")
"""The phases a filter error is counted under; "upstream" is an upstream layer's `forward`."""


def _overrides(filter_: Filter, method: str) -> bool:
    return getattr(type(filter_), method) is not getattr(Filter, method)


@dataclass(frozen=True, slots=True)
class Phase:
    """One filter's hook in one phase."""

    filter: Filter
    hook: Callable[..., Any]
    is_async: bool
    """Declared `async def`: the synchronous runners stop before it."""
    name: str
    traced: bool = True
    """Its duration becomes a span of a traced request (not the tracing hook's own)."""
    timer: FastHistogram | None = None
    """Where its durations go; None for the tracing hook, and without metrics (tests)."""


class FilterTimer(Protocol):
    """Where filter phases report their duration and their failures (the gateway's metrics)."""

    def filter_histogram(self, route: str, name: str, phase: str) -> FastHistogram: ...

    def count_filter_error(self, route: str, name: str, phase: str) -> None: ...


class ResponsePending:
    """A plain response hook returned an awaitable: await it, then run the hooks from `index`."""

    __slots__ = ("awaitable", "index")

    def __init__(self, awaitable: Awaitable[object], index: int) -> None:
        self.awaitable = awaitable
        self.index = index


def _phase(filter_: Filter, hook: Callable[..., Any], timer: FastHistogram | None) -> Phase:
    return Phase(filter_, hook, inspect.iscoroutinefunction(hook), filter_.name, True, timer)


class FilterChain:
    """The compiled filters of one route."""

    __slots__ = (
        "_log_tasks",
        "_metrics",
        "answer_samplers",
        "arm_index",
        "broken",
        "buffers_event_streams",
        "edits_headers",
        "filters",
        "needs_request_body",
        "needs_response_body",
        "on_log",
        "on_request",
        "on_response",
        "response_is_sync",
        "route",
        "tracer",
    )

    def __init__(
        self,
        filters: Sequence[Filter],
        route: str = "",
        timer: FilterTimer | None = None,
        tracer: Filter | None = None,
    ) -> None:
        self.filters = tuple(filters)
        _number_repeated_names(self.filters)
        self.route = route
        self.tracer = tracer
        """The tracing hook (gateway/tracing.py): runs first in the request phase, last in logging."""
        self._metrics = timer

        def timed(f: Filter, phase: str) -> FastHistogram | None:
            return None if timer is None else timer.filter_histogram(route, f.name, phase)

        on_request = [
            _phase(f, f.on_request, timed(f, "request")) for f in self.filters if _overrides(f, "on_request")
        ]
        self.edits_headers = bool(on_request)
        """A filter has a request hook, so it may edit `ctx.headers` (the tracing hook does not)."""
        self.answer_samplers = tuple(
            (f.answer_sample_rate, f.on_sampled_answer) for f in self.filters if f.answer_sample_rate > 0
        )
        """(share, hook) of each filter that studies a random share of answers (answer_sample_rate)."""
        on_log = [_phase(f, f.on_log, None) for f in self.filters if _overrides(f, "on_log")]
        if tracer is not None:
            on_request.insert(0, Phase(tracer, tracer.on_request, False, tracer.name, traced=False))
            on_log.append(Phase(tracer, tracer.on_log, False, tracer.name, traced=False))
        self.on_request = tuple(on_request)
        # Response phases run in reverse order, like unwinding a stack (Envoy's encoder filters).
        self.on_response = tuple(
            _phase(f, f.on_response, timed(f, "response"))
            for f in reversed(self.filters)
            if _overrides(f, "on_response")
        )
        self.on_log = tuple(on_log)
        self.response_is_sync = not any(p.is_async for p in self.on_response)
        self.needs_request_body = any(f.needs_request_body for f in self.filters)
        # On an experiment route, the arm is assigned before the first hook that reads it.
        self.arm_index: int | None = next(
            (i for i, phase in enumerate(self.on_request) if phase.filter.needs_experiment_arm), None
        )
        self.needs_response_body = any(f.needs_response_body for f in self.filters)
        # An event stream is held back only for a filter that asks for it (Filter.buffers_event_streams).
        self.buffers_event_streams = any(
            f.needs_response_body and f.buffers_event_streams for f in self.filters
        )
        self.broken: FilterError | None = None
        """Set when a filter failed to start: the route answers every request with this error."""
        self._log_tasks: set[asyncio.Future[object]] = set()

    @property
    def empty(self) -> bool:
        return not self.filters and self.tracer is None

    def failed(self, name: str, phase: str, cause: BaseException) -> FilterError:
        """Count and log a filter's failure, with its traceback; the caller raises what it returns."""
        if self._metrics is not None:
            self._metrics.count_filter_error(self.route, name, phase)
        error = FilterError(name, phase, cause)
        log.error("%s (route '%s')", error.detail, self.route, exc_info=cause)
        return error

    # ----- request phase -----

    def run_request_sync(
        self, ctx: RequestContext, start: int = 0, stop: int | None = None
    ) -> tuple[object, int]:
        """Run request hooks from `start` (up to `stop`) until one answers or one must be awaited.

        Returns (what stopped the run, index of the first hook not run): None when every hook let the
        request through or the next one is declared async; a `Response` when a hook answered; an
        awaitable when a plain hook returned one (await it with `run_request`)."""
        hooks = self.on_request
        end = len(hooks) if stop is None else stop
        began = time.perf_counter()
        for index in range(start, end):
            phase = hooks[index]
            if phase.is_async:
                return None, index
            try:
                result = phase.hook(ctx)
            except GatewayError:
                raise
            except Exception as exc:
                raise self.failed(phase.name, "request", exc) from exc
            if result is None or isinstance(result, Response):
                ended = time.perf_counter()
                timer = phase.timer
                if timer is not None:
                    timer.observe(ended - began)
                if ctx.trace is not None and phase.traced:  # read after each hook: the tracer sets it
                    _span(ctx, phase, "request", began, ended)
                if result is not None:
                    return result, index + 1
                began = ended
                continue
            if inspect.isawaitable(result):
                return result, index + 1
            raise self.failed(phase.name, "request", _not_a_decision(result))
        return None, end

    async def run_request(
        self,
        ctx: RequestContext,
        start: int,
        stop: int | None = None,
        pending: Awaitable[object] | None = None,
    ) -> tuple[Decision, int]:
        """Run request hooks from `start` (up to `stop`), awaiting where needed; `pending` is what the
        hook before `start` returned to `run_request_sync`."""
        hooks = self.on_request
        end = len(hooks) if stop is None else stop
        index = start
        if pending is not None:
            decision = await self._settle(hooks[index - 1], "request", pending, ctx)
            if decision is not None:
                return decision, index
        while index < end:
            phase = hooks[index]
            index += 1
            try:
                result = phase.hook(ctx)
            except GatewayError:
                raise
            except Exception as exc:
                raise self.failed(phase.name, "request", exc) from exc
            decision = await self._settle(phase, "request", result, ctx)
            if decision is not None:
                return decision, index
        return None, end

    async def _settle(self, phase: Phase, name: str, result: object, ctx: RequestContext) -> Decision:
        """Await what a request hook returned when it is awaitable; check that it is a decision."""
        if result is not None and not isinstance(result, Response) and inspect.isawaitable(result):
            result = await self._await(phase, name, result, ctx)
        if result is None or isinstance(result, Response):
            return result
        raise self.failed(phase.name, name, _not_a_decision(result))

    async def _await(
        self, phase: Phase, name: str, awaitable: Awaitable[object], ctx: RequestContext
    ) -> object:
        began = time.perf_counter()
        try:
            result = await awaitable
        except GatewayError:
            raise
        except Exception as exc:
            raise self.failed(phase.name, name, exc) from exc
        self._observe(phase, name, began, ctx)
        return result

    # ----- response phase -----

    def run_response_sync(
        self, ctx: RequestContext, response: Response, start: int = 0
    ) -> ResponsePending | None:
        """Run the response hooks from `start`; None when all ran, or where to await and go on."""
        hooks = self.on_response
        began = time.perf_counter()
        for index in range(start, len(hooks)):
            phase = hooks[index]
            try:
                result = phase.hook(ctx, response)
            except GatewayError:
                raise
            except Exception as exc:
                raise self.failed(phase.name, "response", exc) from exc
            if result is not None and inspect.isawaitable(result):
                return ResponsePending(result, index + 1)
            ended = time.perf_counter()
            timer = phase.timer
            if timer is not None:
                timer.observe(ended - began)
            if ctx.trace is not None and phase.traced:
                _span(ctx, phase, "response", began, ended)
            began = ended
        return None

    async def run_response(
        self,
        ctx: RequestContext,
        response: Response,
        start: int = 0,
        pending: Awaitable[object] | None = None,
    ) -> None:
        """Run the response hooks from `start`, awaiting where needed."""
        hooks = self.on_response
        if pending is not None:
            await self._await(hooks[start - 1], "response", pending, ctx)
        for index in range(start, len(hooks)):
            phase = hooks[index]
            try:
                result = phase.hook(ctx, response)
            except GatewayError:
                raise
            except Exception as exc:
                raise self.failed(phase.name, "response", exc) from exc
            if result is not None and inspect.isawaitable(result):
                await self._await(phase, "response", result, ctx)

    # ----- logging phase -----

    def run_log(self, ctx: RequestContext) -> None:
        """Every logging hook, in order; a failure is logged and counted, never raised."""
        for phase in self.on_log:
            try:
                result = phase.hook(ctx)
            except Exception as exc:  # a logging hook must never break the request it describes
                self._log_failed(phase.name, exc)
                continue
            if result is not None and inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._log_tasks.add(task)
                task.add_done_callback(self._log_done(phase.name))

    def _log_done(self, name: str) -> Callable[[asyncio.Future[object]], None]:
        def done(task: asyncio.Future[object]) -> None:
            self._log_tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                self._log_failed(name, task.exception())

        return done

    def _log_failed(self, name: str, exc: BaseException | None) -> None:
        self.failed(name, "log", exc if exc is not None else RuntimeError("failed"))

    def _observe(self, phase: Phase, which: str, began: float, ctx: RequestContext) -> None:
        """A hook's duration: to its histogram, and as a span when the request is traced."""
        ended = time.perf_counter()
        timer = phase.timer
        if timer is not None:
            timer.observe(ended - began)
        if ctx.trace is not None and phase.traced:
            _span(ctx, phase, which, began, ended)

    # ----- life cycle -----

    async def start(self) -> None:
        """Start every filter; one that fails is logged and counted, and its route answers 500."""
        for f in self.filters:
            try:
                await f.start()
            except Exception as exc:
                error = self.failed(f.name, "start", exc)
                if self.broken is None:
                    self.broken = error

    async def stop(self) -> None:
        for f in reversed(self.filters):
            try:
                await f.stop()
            except Exception as exc:
                self.failed(f.name, "stop", exc)
        if self._log_tasks:
            await asyncio.wait(set(self._log_tasks))


def _number_repeated_names(filters: Sequence[Filter]) -> None:
    """Every filter of a chain has its own name in metrics and logs: a name used again gets "#2",
    "#3", ... (the first keeps its plain name, so a chain without repeats names nothing new)."""
    seen: dict[str, int] = {}
    for f in filters:
        count = seen[f.name] = seen.get(f.name, 0) + 1
        if count > 1:
            f.name = f"{f.name}#{count}"


def _span(ctx: RequestContext, phase: Phase, which: str, began: float, ended: float) -> None:
    """A timed hook of a traced request, as a child span."""
    trace = ctx.trace
    if trace is not None:
        # perf_counter and monotonic read the same clock where the gateway runs (Linux:
        # CLOCK_MONOTONIC), so these are the monotonic readings the trace expects.
        trace.span(f"filter {phase.name} {which}", began, ended, {"turnout.filter": phase.name})


def _not_a_decision(result: object) -> TypeError:
    return TypeError(f"a hook returned {type(result).__name__}, not None or a Response")
