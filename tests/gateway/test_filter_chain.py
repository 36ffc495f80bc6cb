"""FilterChain alone: hooks called directly on a context, with a recording metrics sink."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.core.context import RequestContext
from gateway.core.errors import Forbidden
from gateway.core.filters import Decision, Filter, FilterError, Response
from gateway.filter_chain import FilterChain
from gateway.observability import FILTER_BUCKETS, FastHistogram


class Sink:
    """Where the chain reports timings and failures (the gateway's metrics, recorded here)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str, str]] = []

    def filter_histogram(self, route: str, name: str, phase: str) -> FastHistogram:
        return FastHistogram(FILTER_BUCKETS)

    def count_filter_error(self, route: str, name: str, phase: str) -> None:
        self.errors.append((route, name, phase))


def ctx() -> RequestContext:
    return RequestContext("GET", "/", "", {}, "10.0.0.1", 0.0)


class Named(Filter):
    def __init__(self, name: str) -> None:
        self.name = name


class Later(Named):
    """A plain on_request that returns a coroutine: awaited like an async def."""

    def on_request(self, ctx: RequestContext) -> Any:
        return self._decide()

    async def _decide(self) -> Decision:
        await asyncio.sleep(0)
        return Response.error(403, "later", "forbidden")


class Returns(Named):
    def __init__(self, name: str, value: object) -> None:
        super().__init__(name)
        self.value = value

    def on_request(self, ctx: RequestContext) -> Any:
        return self.value


class Raises(Named):
    def __init__(self, name: str, error: Exception) -> None:
        super().__init__(name)
        self.error = error

    def on_request(self, ctx: RequestContext) -> Decision:
        raise self.error

    async def on_log(self, ctx: RequestContext) -> None:
        raise self.error

    async def start(self) -> None:
        raise self.error


def test_repeated_names_are_numbered() -> None:
    chain = FilterChain([Named("a"), Named("b"), Named("a"), Named("a")], "r")
    assert [f.name for f in chain.filters] == ["a", "b", "a#2", "a#3"]


async def test_a_plain_hook_returning_an_awaitable_is_awaited() -> None:
    chain = FilterChain([Named("first"), Later("later"), Returns("never", None)], "r")
    request = ctx()
    pending, index = chain.run_request_sync(request)
    assert asyncio.iscoroutine(pending) and index == 1  # handed over, not dropped
    decision, index = await chain.run_request(request, index, None, pending)
    assert decision is not None and decision.status == 403 and index == 1


def test_a_gateway_error_is_an_answer_and_anything_else_names_the_filter() -> None:
    sink = Sink()
    refusing = FilterChain([Raises("guard", Forbidden("no"))], "r", sink)
    with pytest.raises(Forbidden):
        refusing.run_request_sync(ctx())
    broken = FilterChain([Raises("buggy", KeyError("k"))], "r", sink)
    with pytest.raises(FilterError) as failed:
        broken.run_request_sync(ctx())
    assert failed.value.filter_name == "buggy" and failed.value.status == 500
    assert failed.value.detail == "filter 'buggy' failed in its request phase: KeyError: 'k'"
    wrong = FilterChain([Returns("odd", "yes")], "r", sink)
    with pytest.raises(FilterError):
        wrong.run_request_sync(ctx())  # neither None, a Response nor an awaitable
    assert sink.errors == [("r", "buggy", "request"), ("r", "odd", "request")]


async def test_logging_and_start_failures_are_counted_and_contained() -> None:
    sink = Sink()
    chain = FilterChain([Raises("buggy", RuntimeError("boom"))], "r", sink)
    await chain.start()
    assert chain.broken is not None and chain.broken.filter_name == "buggy"
    chain.run_log(ctx())  # an async logging hook that raises: never raised here
    await asyncio.sleep(0.01)
    await chain.stop()
    assert sink.errors == [("r", "buggy", "start"), ("r", "buggy", "log")]
