"""The filter contract: what a plugin implements and what the data path calls.

A filter has up to three phases, in the order of a request's life (Pingora's and Envoy's shape):

- `on_request(ctx)`: before the upstream is chosen. Return None to continue, or a `Response` to answer
  the client at once (401, 403, 429, 400, a cache hit); the remaining filters and the upstream are
  skipped, but response and logging phases of the filters that already ran still run.
- `on_response(ctx, response)`: after the upstream answered (or a filter did); may change the status,
  headers and, when the filter asked for it with `needs_response_body`, the body.
- `on_log(ctx)`: always, once, after the response was sent or the request failed. Never raises.

Each phase may be a plain method or a coroutine (`async def`); the chain looks once, when the route is
compiled, which phases a filter implements and which must be awaited, so the hot path never calls an
empty hook. Filters are shared by all requests of a route: per-request state goes in
`ctx.state[filter.name]`.

A factory builds a filter from its validated config model; `plugins/__init__.py` maps names to
factories and third-party filters load by import path through the same factory shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson
from pydantic import BaseModel

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError


@dataclass(slots=True)
class Response:
    """An answer given by a filter, or the upstream's answer as the response phase sees it.

    `headers` are (name, value) pairs with lower-case names; `body` is None for a streamed upstream
    body that the filters did not ask to buffer."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = b""

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
        pairs = [("content-type", "application/json")]
        if headers:
            pairs.extend((k.lower(), v) for k, v in headers.items())
        return cls(status, pairs, orjson.dumps(payload))

    @classmethod
    def error(
        cls, status: int, message: str, code: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        return cls.json(status, {"error": message, "code": code}, headers)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))


Decision = Response | None


class FilterError(GatewayError):
    """A filter's hook raised something other than a `GatewayError`: a bug in that filter.

    The client gets a 500 naming the filter (never the exception's text, which may hold anything);
    the access log and `ctx.error` get `detail`, with the phase and the exception."""

    status = 500
    code = "filter_error"

    def __init__(self, filter_name: str, phase: str, cause: BaseException) -> None:
        super().__init__(f"filter '{filter_name}' failed")
        self.filter_name = filter_name
        self.phase = phase
        self.detail = f"filter '{filter_name}' failed in its {phase} phase: {type(cause).__name__}: {cause}"

    def body(self) -> bytes:
        return orjson.dumps({"error": self.message, "code": self.code, "filter": self.filter_name})


class Filter:
    """Base class of filters: every phase does nothing until a subclass overrides it."""

    name: str = "filter"
    needs_request_body: ClassVar[bool] = False
    """The request phase reads `ctx.body` (the data path then reads the whole body first)."""
    needs_response_body: ClassVar[bool] = False
    """The response phase reads or rewrites `response.body` (the data path then buffers it)."""
    needs_experiment_arm: ClassVar[bool] = False
    """The request phase reads `ctx.arm` (a cache key): on an experiment route the arm is assigned
    just before this filter's request phase instead of after the whole chain."""

    def on_request(self, ctx: RequestContext) -> Decision | Awaitable[Decision]:
        return None

    def on_response(self, ctx: RequestContext, response: Response) -> Awaitable[None] | None:
        return None

    def on_log(self, ctx: RequestContext) -> None:
        return None

    async def start(self) -> None:
        """Open resources (connections, refresh tasks) before the route takes traffic."""

    async def stop(self) -> None:
        """Close what `start` opened."""


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a factory may use to build a filter: where it sits, and shared services."""

    route: str
    cluster: str
    registry: Any
    """The gateway's prometheus_client CollectorRegistry (one per gateway; never the global one)."""
    redis_url: str | None = None
    """The shared state backend, when the gateway config names one."""
    base_dir: str = "."
    """The directory of the config file, for relative paths in filter configs."""


class FilterFactory(Protocol):
    """Builds one filter from its config; `config_model` validates that config at load."""

    config_model: type[BaseModel]

    def __call__(self, config: Any, build: BuildContext) -> Filter: ...


RequestHook = Callable[[RequestContext], Decision | Awaitable[Decision]]
