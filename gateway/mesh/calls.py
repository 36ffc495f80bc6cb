"""The calls a mesh connection serves itself (`front.py`): ext_proc's Process, and ext_authz,
RLS and ADS, by their grpcio servicers' methods, when they follow on such a connection.

A message whose decision completes in memory is answered inline, on the event loop, without a
task; one that waits (Redis) is carried on by a task, and the stream's later messages wait behind
it, so answers keep Envoy's order. A unary call (Check, ShouldRateLimit) is stepped the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf.message import DecodeError

from gateway.mesh.ext_proc import BodyModes, _Stream, serialized
from gateway.mesh.ext_proc_answer import ProtocolError
from gateway.mesh.http2 import INTERNAL, ServerStream

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("turnout.mesh")

_INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
ADS_SERVICE = "/envoy.service.discovery.v3.AggregatedDiscoveryService"
ADS_METHOD = f"{ADS_SERVICE}/StreamAggregatedResources"


class _Reyield:
    """Yields again what a hand-stepped coroutine yielded, so that a task carries it on."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.value)


async def _carry_on(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """The rest of `coro`, which yielded `yielded` (a future) at its first step: the task running
    this waits on what the coroutine waits on, and sends (or throws) the outcome into it."""
    while True:
        try:
            sent = await _Reyield(yielded)
        except BaseException as exc:  # cancellation included: the coroutine sees it
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


class ProcessCall:
    """One ext_proc stream: `_Stream`'s state machine on a `ServerStream`."""

    __slots__ = ("closing", "out", "queue", "state", "task")

    def __init__(self, state: _Stream, out: ServerStream) -> None:
        self.state = state
        self.out = out
        self.queue: deque[bytes] = deque()
        self.task: asyncio.Future[Any] | None = None
        self.closing = False

    def received(self, message: bytes) -> None:
        if self.task is not None:
            self.queue.append(message)
            return
        self._answer(message)

    def _answer(self, raw: bytes) -> None:
        try:
            message = pb.ProcessingRequest.FromString(raw)
        except DecodeError:
            self._fail(_INVALID_ARGUMENT, "not a ProcessingRequest", 400)
            return
        # Stepped by hand: an in-memory decision (API keys, the in-memory limiter, the arm, the
        # endpoint) returns at the first step, answered at once without a task. One that waits
        # yields a future (its waiting hooks run as tasks of their own: exchange.in_task), and a
        # task carries the rest on.
        coro = self.state.answer(message)
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            self.out.send_message(serialized(stop.value))
            return
        except ProtocolError as exc:
            self._fail(_INVALID_ARGUMENT, str(exc), 400)
            return
        except Exception:
            log.exception("mesh: ext_proc failed")
            self._fail(INTERNAL, "turnout failed on this message", 500)
            return
        self.task = asyncio.ensure_future(_carry_on(coro, yielded))
        self.task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Future[Any]) -> None:
        self.task = None
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, ProtocolError):
            self._fail(_INVALID_ARGUMENT, str(exc), 400)
            return
        if exc is not None:
            log.error("mesh: ext_proc failed", exc_info=exc)
            self._fail(INTERNAL, "turnout failed on this message", 500)
            return
        self.out.send_message(serialized(task.result()))
        while self.queue and self.task is None and self.out.finished is None:
            self._answer(self.queue.popleft())
        if self.closing and self.task is None:
            self.half_closed()

    def _fail(self, code: int, message: str, status: int) -> None:
        self.queue.clear()
        self.state.end(status, message)
        self.out.finish(code, message)

    def half_closed(self) -> None:
        """Envoy closed its side: once every message is answered, the stream ends."""
        if self.task is not None or self.queue:
            self.closing = True
            return
        self.state.end_unseen()
        self.out.finish()

    def reset(self) -> None:
        """The stream was cancelled or its connection lost: the request ends as 499."""
        self.queue.clear()
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.state.end(499, "the ext_proc stream ended before the response")


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _Context:
    """What the servicers use of grpc.aio's ServicerContext: `abort`, and the call's metadata."""

    __slots__ = ("_headers",)

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self._headers = headers

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        """The request's headers, less the pseudo-headers, as grpcio gives them."""
        return tuple((name, value) for name, value in self._headers if not name.startswith(":"))

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise _Aborted(code, details)


class UnaryCall:
    """A unary call (ext_authz Check, RLS ShouldRateLimit) by its grpcio servicer method, stepped
    by hand as ext_proc's messages are: an in-memory answer goes out at once, without a task."""

    __slots__ = ("method", "out", "parse", "request", "task")

    def __init__(
        self,
        method: Callable[[Any, Any], Coroutine[Any, Any, Any]],
        parse: Callable[[bytes], Any],
        out: ServerStream,
    ) -> None:
        self.method = method
        self.parse = parse
        self.out = out
        self.request: bytes | None = None
        self.task: asyncio.Future[Any] | None = None

    def received(self, message: bytes) -> None:
        self.request = message

    def half_closed(self) -> None:
        if self.request is None:
            self.out.finish(_INVALID_ARGUMENT, "a unary call without its request")
            return
        try:
            request = self.parse(self.request)
        except DecodeError:
            self.out.finish(_INVALID_ARGUMENT, "not the method's request message")
            return
        coro = self.method(request, _Context(self.out.headers))
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            self._answer(stop.value, None)
            return
        except Exception as exc:
            self._answer(None, exc)
            return
        self.task = asyncio.ensure_future(_carry_on(coro, yielded))
        self.task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        self._answer(None if exc is not None else task.result(), exc)

    def _answer(self, response: Any, exc: BaseException | None) -> None:
        if isinstance(exc, _Aborted):
            self.out.finish(exc.code.value[0], exc.details)
        elif exc is not None:
            log.error("mesh: a unary call failed", exc_info=exc)
            self.out.finish(INTERNAL, "turnout failed on this call")
        else:
            self.out.send_message(response.SerializeToString())
            self.out.finish()

    def reset(self) -> None:
        if self.task is not None:
            self.task.cancel()


class StreamCall:
    """A streaming call (ADS, state of the world and delta) by its grpcio servicer method, for a
    connection whose first call was ext_proc (one grpcio process shares a connection between its
    channels to one address, so an xDS client beside an ext_proc client may send ADS here)."""

    __slots__ = ("out", "parse", "queue", "task")

    def __init__(
        self,
        method: Callable[[AsyncIterator[Any], Any], AsyncIterator[Any]],
        parse: Callable[[bytes], Any],
        out: ServerStream,
    ) -> None:
        self.out = out
        self.parse = parse
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._run(method))

    async def _requests(self) -> AsyncIterator[Any]:
        while (raw := await self.queue.get()) is not None:
            try:
                yield self.parse(raw)
            except DecodeError:
                raise _Aborted(grpc.StatusCode.INVALID_ARGUMENT, "not the method's request message") from None

    async def _run(self, method: Callable[[AsyncIterator[Any], Any], AsyncIterator[Any]]) -> None:
        try:
            async for response in method(self._requests(), _Context(self.out.headers)):
                self.out.send_message(response.SerializeToString())
        except _Aborted as exc:
            self.out.finish(exc.code.value[0], exc.details)
        except Exception:
            log.exception("mesh: a streaming call failed")
            self.out.finish(INTERNAL, "turnout failed on this call")
        else:
            self.out.finish()

    def received(self, message: bytes) -> None:
        self.queue.put_nowait(message)

    def half_closed(self) -> None:
        self.queue.put_nowait(None)

    def reset(self) -> None:
        self.task.cancel()


def call_handlers(
    runtime: Callable[[], Runtime],
    body_modes: BodyModes,
    max_body: int,
    delegated: frozenset[str],
    check: Callable[[Any, Any], Coroutine[Any, Any, Any]],
    should_rate_limit: Callable[[Any, Any], Coroutine[Any, Any, Any]],
    discovery: Any,
) -> dict[str, Callable[[ServerStream], Any]]:
    """The method paths served on a mesh connection of its own, and what serves each."""
    from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
    from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest, DiscoveryRequest
    from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest

    def process(out: ServerStream) -> ProcessCall:
        return ProcessCall(_Stream(runtime(), body_modes, max_body, delegated), out)

    return {
        "/envoy.service.ext_proc.v3.ExternalProcessor/Process": process,
        "/envoy.service.auth.v3.Authorization/Check": lambda out: UnaryCall(
            check, CheckRequest.FromString, out
        ),
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit": lambda out: UnaryCall(
            should_rate_limit, RateLimitRequest.FromString, out
        ),
        ADS_METHOD: lambda out: StreamCall(
            discovery.StreamAggregatedResources, DiscoveryRequest.FromString, out
        ),
        f"{ADS_SERVICE}/DeltaAggregatedResources": lambda out: StreamCall(
            discovery.DeltaAggregatedResources, DeltaDiscoveryRequest.FromString, out
        ),
    }
