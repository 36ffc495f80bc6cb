"""The filter contract: what a plugin implements and what the data path calls.

A filter has up to three phases, in the order of a request's life (Pingora's and Envoy's shape):

- `on_request(ctx)`: before the upstream is chosen. Return None to continue, or a `Response` to answer
  the client at once (401, 403, 429, 400, a cache hit); the remaining request phases and the upstream
  are skipped, the response and logging phases still run. What the phase leaves in `ctx.headers`,
  `ctx.path` and `ctx.query` is exactly what the upstream receives (Envoy's mutable header map):
  `ctx.headers["x-tenant"] = "acme"` adds or replaces a header (every copy the client sent is
  replaced, so a client cannot smuggle a header a filter sets), `ctx.headers.pop("cookie", None)`
  removes one, and a new `ctx.path` or `ctx.query` changes the request target (the route's prefix
  rewrite applies to the path after the filters). `ctx.body`, for a filter with `needs_request_body`,
  is the body sent.
- `on_response(ctx, response)`: after the upstream answered (or a filter did); what it leaves in
  `response.status`, `response.headers` and, with `needs_response_body`, `response.body` is what the
  client receives.
- `on_log(ctx)`: always, once, after the response was sent or the request failed.

A hook is awaited when what it returns is awaitable, whatever its declaration (`async def`, or a
plain method returning a coroutine); the chain looks once, when the route is compiled, which phases
a filter implements, so the hot path never calls an empty hook. Filters are shared by all requests
of a route: per-request state goes in `ctx.state[self.name]`. Every filter has a name, set when its
route is built: its key in the config (`cache`) or its plugin path (`my_filters:REQUIRE_TENANT`),
with `#2`, `#3`, ... when a route uses the same one again; metrics and logs use it.

A hook that raises a `GatewayError` answers with it (its status and message). Any other exception is
a bug in the filter, and it is contained: the client gets a 500 `{"error", "code": "filter_error",
"filter": NAME}` (or, once the answer has started, a closed connection), the logging phase runs,
`turnout_filter_errors_total{route,filter,phase}` counts it, and the upstream endpoint is not charged.
An exception in `on_log` or `stop` is logged and counted; one in `start` makes the route answer
every request with that 500 until the filter is rebuilt.

A filter that needs the answer's body for a few requests only leaves `needs_response_body` off and
calls `ctx.watch_answer(callback)` in its request phase for the requests it picked: only those are
held back whole, and `callback(ctx, response)` sees each once it is written; every other request
streams as if the filter had no interest in bodies. A filter that wants a random share of answers
(a monitor's sample) needs no request hook at all: it sets `answer_sample_rate`, and the data path
draws once per request and watches the drawn ones with `on_sampled_answer`.

Optional capabilities, which the gateway checks with `isinstance` when a route is built:
`Filter.keeps_state_across_reloads`, `UpstreamLayer` (the filter sends the route's requests itself:
batching), `UsesModelMetadata` (the gateway hands it a fetcher of model metadata),
`ReadsUpstreamPath` (it is told the route's rewrite) and `InvalidatesCache` (the admin API's cache
invalidation reaches it).

A factory builds a filter from its validated config model; `plugins/__init__.py` maps names to
factories and third-party filters load by import path through the same factory shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

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
    buffers_event_streams: bool = False
    """With `needs_response_body`: a server-sent event stream (`text/event-stream`, an LLM's
    streamed completion) is held back whole for this filter too. By default such an answer streams
    past the filters as it arrives, and their response phase sees its head with `body` None."""
    needs_experiment_arm: ClassVar[bool] = False
    """The request phase reads `ctx.arm` (a cache key): on an experiment route the arm is assigned
    just before this filter's request phase instead of after the whole chain."""
    answer_sample_rate: float = 0.0
    """The share of the route's requests, drawn at random by the data path before its request hooks,
    whose whole answer `on_sampled_answer` sees once it is written (0: none). A request left out
    costs one random draw; its answer streams as if the filter were not there."""
    keeps_state_across_reloads: bool = False
    """The filter is built from its options alone (no file, nothing outside its config): a reload that
    leaves its route's filters, retry and timeout unchanged keeps the whole chain, with its
    in-process state, when every filter in it says so. Otherwise the chain is rebuilt."""

    def on_request(self, ctx: RequestContext) -> Decision | Awaitable[Decision]:
        return None

    def on_response(self, ctx: RequestContext, response: Response) -> Awaitable[None] | None:
        return None

    def on_log(self, ctx: RequestContext) -> Awaitable[None] | None:
        return None

    def on_sampled_answer(self, ctx: RequestContext, response: Response) -> None:
        """A drawn request's answer (`answer_sample_rate`), as written to the client; runs like a
        logging hook: it must not block, and what it raises is logged, never raised."""

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

UpstreamReply = tuple[int, Mapping[str, str], bytes]
"""(status, headers, body) of an answer from a cluster."""


class ClusterSender(Protocol):
    """How an upstream layer reaches one cluster, through its balancer, retries and timeout."""

    @property
    def send(self) -> Callable[[str, bytes, str, Mapping[str, str]], Awaitable[UpstreamReply]]:
        """`send(path, body, content_type, headers)`: POST one request to the cluster; raises a
        `GatewayError` (502, 503, 504) when no answer came."""

    @property
    def endpoint_count(self) -> Callable[[], int]:
        """How many endpoints can take requests now (sizes in-flight limits)."""

    @property
    def get(self) -> Callable[[str], Awaitable[tuple[int, bytes]]] | None:
        """`get(path)`: GET a path on one endpoint (server metadata, say): `(status, body)`; raises
        a `GatewayError` when no answer came. None where the sender cannot."""


@runtime_checkable
class UpstreamLayer(Protocol):
    """A filter that sends its route's requests itself (batching) instead of letting the proxy
    forward each one. The gateway attaches a sender for every cluster the route can reach before
    `start`, and then calls `forward` after the request phase instead of proxying."""

    name: str

    def attach_upstream(self, cluster: str, upstream: ClusterSender) -> None:
        """Use `upstream` for requests to `cluster`."""

    async def forward(self, ctx: RequestContext, path: str) -> Response:
        """Answer this request through `ctx.cluster`; `path` is the path the upstream sees (after
        the request filters' edits and the route's rewrite). Raise a `GatewayError` to refuse."""


MetadataFetcher = Callable[[str, str | None], Awaitable[Mapping[str, Any] | None]]
"""(model, version or None) -> the model's metadata document (OIP v2 `GET /v2/models/{model}`), or
None when the model is unknown there."""


@runtime_checkable
class UsesModelMetadata(Protocol):
    """A filter that checks requests against model metadata (input names, shapes, types)."""

    @property
    def has_metadata_source(self) -> bool:
        """True when the filter's own config says where metadata comes from; the gateway then
        leaves it alone."""

    def set_metadata_fetcher(self, fetcher: MetadataFetcher) -> None:
        """The gateway's fetcher from the route's own cluster, given when the route is built."""


@runtime_checkable
class ReadsUpstreamPath(Protocol):
    """A filter that reads the request's path as the upstream will see it (after the route's
    rewrite); the gateway hands it the route's rewrite when the route has one."""

    def use_upstream_path(self, upstream_path: Callable[[str], str]) -> None:
        """`upstream_path(ctx.path)` is the path the upstream will receive."""


@runtime_checkable
class InvalidatesCache(Protocol):
    """A filter holding cached answers that the admin API can drop (`POST /admin/cache/invalidate`)."""

    async def invalidate(self, model: str | None) -> int:
        """Drop the cached answers of `model` (every model when None); returns how many."""
