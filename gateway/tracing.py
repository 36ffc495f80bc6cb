"""OpenTelemetry traces of the data path, exported over OTLP/HTTP (the `tracing:` section).

    Tracing        one per gateway process: the SDK's tracer provider, a parent-based ratio
                   sampler and a batch processor whose thread exports to the collector; carried
                   over by a reload that leaves `tracing:` unchanged
    TracingFilter  a hook the filter chain runs first in the request phase (opens the request's
                   server span, `ctx.trace`) and last in the logging phase (ends it with the
                   status), so every routed request gets one span whatever ends it
    RequestSpan    `ctx.trace`: children recorded with explicit start and end times (filter
                   phases, the experiment assignment, the batching queue wait) and upstream
                   attempts, each a client span whose traceparent goes upstream

The SDK is imported when a `Tracing` opens, so a gateway without `tracing:` never loads it, and
its routes never see the hook: tracing off costs the data path one `ctx.trace is None` test
where a span would be recorded. A request the sampler leaves out still gets a (non-recording)
span context, so the trace id and a new parent id still go upstream; it records no children.
Export happens on the batch processor's thread with a bounded queue: a slow or unreachable
collector drops spans, it never delays a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
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
# Seconds between exports: spans reach the collector within a second, in batches of up to 512.
EXPORT_INTERVAL_MS = 1000


class Tracing:
    """The process's tracer for one `tracing:` config: `open` before traffic, `close` after."""

    __slots__ = ("_provider", "_tracer", "config", "filter")

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        self._provider: Any = None
        self._tracer: Any = None
        self.filter = TracingFilter(self)
        """The hook every route's filter chain runs (gateway/filter_chain.py)."""

    def open(self) -> None:
        """Build the SDK's provider, sampler and exporter (the exporter's thread starts here)."""
        if self._provider is not None:
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        config = self.config
        provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sampling_ratio)),
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

    async def close(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop the exporter's thread."""
        provider, self._provider, self._tracer = self._provider, None, None
        if provider is not None:
            await asyncio.to_thread(provider.shutdown)

    def begin(self, ctx: RequestContext) -> RequestSpan | None:
        """Open the server span of a request, continuing the client's traceparent when it sent one."""
        tracer = self._tracer
        if tracer is None:
            return None
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract(ctx.headers)
        now_ns = time.time_ns()
        now = time.monotonic()
        started_ns = now_ns - int((now - ctx.started) * 1e9)
        span = tracer.start_span(
            f"{ctx.method} {ctx.route}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            start_time=started_ns,
            attributes={
                "http.request.method": ctx.method,
                "url.path": ctx.path,
                "http.route": ctx.route,
                "client.address": ctx.client_ip,
                "turnout.request_id": ctx.request_id,
            },
        )
        return RequestSpan(tracer, span, trace.set_span_in_context(span), now_ns, now)


class RequestSpan:
    """One request's trace (`ctx.trace`, the `RequestTrace` contract of gateway/core/trace.py)."""

    __slots__ = ("_anchor", "_anchor_ns", "_context", "_tracer", "recording", "server_span")

    def __init__(self, tracer: Any, span: Any, context: Any, anchor_ns: int, anchor: float) -> None:
        self._tracer = tracer
        self.server_span = span
        self._context = context
        self.recording: bool = span.is_recording()
        """False when the sampler left this trace out: only the trace context travels on."""
        # time.monotonic() readings become wall-clock nanoseconds by one subtraction from this pair.
        self._anchor_ns = anchor_ns
        self._anchor = anchor

    def _ns(self, monotonic: float) -> int:
        return self._anchor_ns + int((monotonic - self._anchor) * 1e9)

    def span(
        self, name: str, start: float, end: float, attributes: Mapping[str, SpanValue] | None = None
    ) -> None:
        if not self.recording:
            return
        child = self._tracer.start_span(
            name, context=self._context, start_time=self._ns(start), attributes=attributes
        )
        child.end(end_time=self._ns(end))

    def attempt(self, endpoint: str, number: int) -> UpstreamSpan:
        from opentelemetry.trace import SpanKind

        address, _, port = endpoint.rpartition(":")
        span = self._tracer.start_span(
            "upstream attempt",
            context=self._context,
            kind=SpanKind.CLIENT,
            attributes={
                "server.address": address,
                "server.port": int(port) if port.isdigit() else 0,
                "turnout.endpoint": endpoint,
                "turnout.attempt": number,
            },
        )
        return UpstreamSpan(span)

    def end(self, ctx: RequestContext) -> None:
        """The request is over: its outcome on the server span, which ends now."""
        span = self.server_span
        if self.recording:
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
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, ctx.error))
                span.set_attribute("error.type", str(status))
        span.end()


class UpstreamSpan:
    """One upstream attempt's client span (the `AttemptSpan` contract)."""

    __slots__ = ("_span", "traceparent")

    def __init__(self, span: Any) -> None:
        self._span = span
        context = span.get_span_context()
        self.traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"

    def set_status(self, status: int) -> None:
        span = self._span
        span.set_attribute("http.response.status_code", status)
        if status >= 400:  # a client span is in error for every 4xx and 5xx
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", str(status))

    def fail(self, reason: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_status(Status(StatusCode.ERROR, reason))
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
