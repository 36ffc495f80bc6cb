"""OpenTelemetry traces of the data path, exported over OTLP/HTTP (the `tracing:` section).

    Tracing        one per gateway process: the sampling decision, the SDK's tracer provider and
                   a batch processor whose thread exports to the collector; carried over by a
                   reload that leaves `tracing:` unchanged
    TracingFilter  a hook the filter chain runs first in the request phase (opens the request's
                   server span, `ctx.trace`) and last in the logging phase (ends it with the
                   status), so every routed request gets one span whatever ends it
    RequestSpan    `ctx.trace` of a recorded request: children with explicit start and end times
                   (filter phases, the experiment assignment, the batching queue wait) and
                   upstream attempts, each a client span whose traceparent goes upstream
    UnsampledTrace `ctx.trace` of a request left out: records nothing, never calls the SDK, and
                   still gives each attempt a traceparent (the trace id, a new parent id, the
                   sampled flag unset), so the trace goes on past the gateway

Sampling is parent-based: a client's valid traceparent decides by its sampled flag, a new trace is
recorded at `sampling_ratio`. The decision is taken before the SDK is called, because the SDK's
spans cost tens of microseconds even when they record nothing (docs/observability.md, Tracing).
The SDK is imported when a `Tracing` opens, so a gateway without `tracing:` never loads it, and
its routes never see the hook: tracing off costs the data path one `ctx.trace is None` test
where a span would be recorded. Export happens on the batch processor's thread with a bounded
queue: a slow or unreachable collector drops spans, it never delays a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from random import getrandbits as _random_bits
from typing import TYPE_CHECKING, Any

from gateway.core.filters import Filter

if TYPE_CHECKING:
    from gateway.config.models.tracing import TracingConfig
    from gateway.core.context import RequestContext
    from gateway.core.trace import SpanValue

log = logging.getLogger("turnout.tracing")

# How long one export may take before its batch is dropped: the collector is expected nearby; the
# wait happens on the exporter's thread, and bounds how long a shutdown waits for the last batch.
EXPORT_TIMEOUT_S = 2.0
# Spans waiting for export; beyond this the newest are dropped (the SDK's default queue size).
MAX_QUEUE = 2048
# Milliseconds between exports: spans reach the collector within a second, in batches of up to 512.
EXPORT_INTERVAL_MS = 1000


class Tracing:
    """The process's tracer for one `tracing:` config: `open` before traffic, `close` after."""

    __slots__ = ("_bound", "_otel", "_provider", "_tracer", "config", "filter")

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        # A new trace is recorded when 64 random bits fall under this bound (the ratio's share).
        self._bound = round(config.sampling_ratio * _RANDOM_RANGE)
        self._provider: Any = None
        self._tracer: Any = None
        self._otel: _Otel | None = None
        self.filter = TracingFilter(self)
        """The hook every route's filter chain runs (gateway/filter_chain.py)."""

    def open(self) -> None:
        """Build the SDK's provider and exporter (the exporter's thread starts here)."""
        if self._provider is not None:
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

        config = self.config
        provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            # `begin` samples before the SDK sees a request: what reaches it is recorded, and a
            # client's traceparent keeps its say (parent-based) when it reaches the SDK.
            sampler=ParentBased(ALWAYS_ON),
            shutdown_on_exit=False,  # `close` does it: no atexit hook holding every tracer ever built
        )
        exporter = OTLPSpanExporter(endpoint=config.endpoint, timeout=EXPORT_TIMEOUT_S)
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=MAX_QUEUE,
                schedule_delay_millis=EXPORT_INTERVAL_MS,
                export_timeout_millis=EXPORT_TIMEOUT_S * 1000,
            )
        )
        self._provider = provider
        self._tracer = provider.get_tracer("turnout")
        self._otel = _Otel()
        log.info("tracing to %s, recording %g of new traces", config.endpoint, config.sampling_ratio)

    async def close(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop the exporter's thread."""
        provider, self._provider, self._tracer = self._provider, None, None
        if provider is not None:
            await asyncio.to_thread(provider.shutdown)

    def begin(
        self, ctx: RequestContext, name: str | None = None, carrier: Mapping[str, str] | None = None
    ) -> RequestSpan | UnsampledTrace | None:
        """Open the server span of a request, continuing the client's traceparent when it sent one.

        The sampling decision is made here, without the SDK: the client's sampled flag when it
        sent a valid traceparent, else the ratio. A request left out costs a few string
        operations: its trace context still goes upstream, with the flag unset. `name` replaces
        the span's name (the method and route); `carrier`, the headers the trace context is read
        from (the request's), for a call that carries it elsewhere (a gRPC call's metadata)."""
        tracer = self._tracer
        otel = self._otel
        if tracer is None or otel is None:
            return None
        headers = ctx.headers if carrier is None else carrier
        incoming = headers.get("traceparent")
        parent = _parse_traceparent(incoming) if incoming is not None else None
        if parent is None:
            random_bits = _random_bits(64)
            if random_bits >= self._bound:
                return UnsampledTrace(f"{_random_bits(64):016x}{random_bits:016x}", "00")
            context = None
        elif parent[1] & 1:
            context = otel.propagator.extract(headers)
        else:
            return UnsampledTrace(parent[0], f"{parent[1]:02x}")
        now_ns = time.time_ns()
        now = time.monotonic()
        route = ctx.route
        attributes = {
            "http.request.method": ctx.method,
            "url.path": ctx.path,
            "client.address": ctx.client_ip,
            "turnout.request_id": ctx.request_id,
        }
        if route:  # a request that matched no route is named by its method alone
            attributes["http.route"] = route
        if name is None:
            name = f"{ctx.method} {route}" if route else ctx.method
        span = tracer.start_span(
            name,
            context=context,
            kind=otel.server,
            start_time=now_ns - int((now - ctx.started) * 1e9),
            attributes=attributes,
        )
        return RequestSpan(tracer, otel, span, otel.set_span_in_context(span), now_ns, now)

    def unrouted(self, ctx: RequestContext) -> None:
        """A request that matched no route, already answered: its server span, begun and ended."""
        trace = self.begin(ctx)
        if isinstance(trace, RequestSpan):
            trace.end(ctx)


# 64-bit random numbers fall in [0, 2**64): the sampling ratio's share of them is recorded.
_RANDOM_RANGE = 1 << 64


def _parse_traceparent(value: str) -> tuple[str, int] | None:
    """(trace id, flags) of a valid W3C traceparent (version 00 layout), else None."""
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version, trace_id, span_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if version == "ff" or (len(value) > 55 and (version == "00" or value[55] != "-")):
        return None
    try:
        if not int(trace_id, 16) or not int(span_id, 16):
            return None
        return trace_id.lower(), int(flags, 16)
    except ValueError:
        return None


class _Otel:
    """The OpenTelemetry API's names the per-request path uses, imported once."""

    __slots__ = ("client", "error", "propagator", "server", "set_span_in_context", "status")

    def __init__(self) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.server = SpanKind.SERVER
        self.client = SpanKind.CLIENT
        self.status = Status
        self.error = StatusCode.ERROR
        self.set_span_in_context = set_span_in_context
        self.propagator = TraceContextTextMapPropagator()


class UnsampledTrace:
    """A request the sampler left out: nothing is recorded, the trace context travels on."""

    __slots__ = ("flags", "trace_id")

    # Nothing is recorded for it, so no exemplar may point at it.
    exemplar_id = None

    def __init__(self, trace_id: str, flags: str) -> None:
        self.trace_id = trace_id
        self.flags = flags

    def span(
        self, name: str, start: float, end: float, attributes: Mapping[str, SpanValue] | None = None
    ) -> None:
        return None

    def attempt(self, endpoint: str, number: int) -> UnsampledAttempt:
        return UnsampledAttempt(f"00-{self.trace_id}-{_random_bits(64) or 1:016x}-{self.flags}")


class UnsampledAttempt:
    """An upstream attempt of a request left out: only its traceparent."""

    __slots__ = ("traceparent",)

    def __init__(self, traceparent: str) -> None:
        self.traceparent = traceparent

    def set_status(self, status: int) -> None:
        return None

    def fail(self, reason: str) -> None:
        return None

    def end(self) -> None:
        return None


class RequestSpan:
    """One request's trace (`ctx.trace`, the `RequestTrace` contract of gateway/core/trace.py)."""

    __slots__ = ("_anchor", "_anchor_ns", "_context", "_otel", "_tracer", "server_span")

    def __init__(
        self, tracer: Any, otel: _Otel, span: Any, context: Any, anchor_ns: int, anchor: float
    ) -> None:
        self._tracer = tracer
        self._otel = otel
        self.server_span = span
        self._context = context
        # time.monotonic() readings become wall-clock nanoseconds by one subtraction from this pair.
        self._anchor_ns = anchor_ns
        self._anchor = anchor

    @property
    def exemplar_id(self) -> str:
        return f"{self.server_span.get_span_context().trace_id:032x}"

    def _ns(self, monotonic: float) -> int:
        return self._anchor_ns + int((monotonic - self._anchor) * 1e9)

    def span(
        self, name: str, start: float, end: float, attributes: Mapping[str, SpanValue] | None = None
    ) -> None:
        child = self._tracer.start_span(
            name, context=self._context, start_time=self._ns(start), attributes=attributes
        )
        child.end(end_time=self._ns(end))

    def attempt(self, endpoint: str, number: int) -> UpstreamSpan:
        address, _, port = endpoint.rpartition(":")
        span = self._tracer.start_span(
            "upstream attempt",
            context=self._context,
            kind=self._otel.client,
            attributes={
                "server.address": address,
                "server.port": int(port) if port.isdigit() else 0,
                "turnout.endpoint": endpoint,
                "turnout.attempt": number,
            },
        )
        return UpstreamSpan(span, self._otel)

    def end(self, ctx: RequestContext) -> None:
        """The request is over: its outcome on the server span, which ends now."""
        span = self.server_span
        if span.is_recording():
            status = ctx.status
            span.set_attribute("http.response.status_code", status)
            if ctx.cluster:
                span.set_attribute("turnout.cluster", ctx.cluster)
            if ctx.endpoint:
                span.set_attribute("turnout.endpoint", ctx.endpoint)
            if ctx.retries:
                span.set_attribute("turnout.retries", ctx.retries)
            if ctx.model is not None:
                span.set_attribute("turnout.model", ctx.model)
            if ctx.arm is not None:
                span.set_attribute("turnout.arm", ctx.arm)
            if status >= 500:  # a server span is in error for 5xx only (OpenTelemetry's HTTP conventions)
                otel = self._otel
                span.set_status(otel.status(otel.error, ctx.error))
                span.set_attribute("error.type", str(status))
        span.end()


class UpstreamSpan:
    """One upstream attempt's client span (the `AttemptSpan` contract)."""

    __slots__ = ("_otel", "_span", "traceparent")

    def __init__(self, span: Any, otel: _Otel) -> None:
        self._span = span
        self._otel = otel
        context = span.get_span_context()
        self.traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"

    def set_status(self, status: int) -> None:
        span = self._span
        span.set_attribute("http.response.status_code", status)
        if status >= 400:  # a client span is in error for every 4xx and 5xx
            span.set_status(self._otel.status(self._otel.error))
            span.set_attribute("error.type", str(status))

    def fail(self, reason: str) -> None:
        self._span.set_status(self._otel.status(self._otel.error, reason))
        self._span.set_attribute("error.type", "upstream_failure")

    def end(self) -> None:
        self._span.end()


class TracingFilter(Filter):
    """The request span's two hooks, which the filter chain runs around the route's own filters
    (it is no filter of the config: it has no metrics of its own and no options)."""

    name = "tracing"

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    def on_request(self, ctx: RequestContext) -> None:
        ctx.trace = self._tracing.begin(ctx)

    def on_log(self, ctx: RequestContext) -> None:
        trace = ctx.trace
        if isinstance(trace, RequestSpan):
            trace.end(ctx)
