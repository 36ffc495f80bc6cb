"""Metrics of OpenAI completions: latency to the first token and per output token, and token usage.

Usage counters are labelled by tenant, principal, model and route, the grain billing needs; the
latency histograms by route and model only (a principal label would multiply their buckets by the
number of callers). A request without a principal is counted under "" for both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:
    from gateway.usage_ledger import UsageLedger

# Time to first token: a cached prefix answers in tens of milliseconds, a long prompt on a busy
# server takes seconds; past 30 s a client has usually given up.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Time per output token: 5 ms (a small model on a fast GPU) to half a second (a large model, or a
# server out of KV cache, swapping).
TPOT_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)

_USAGE_LABELS = ("tenant", "principal", "model", "route")


class LlmMetrics:
    """The completion metric families, on one registry (one per gateway)."""

    __slots__ = (
        "completion_tokens",
        "ledger",
        "prompt_tokens",
        "requests",
        "time_per_output_token",
        "time_to_first_token",
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ledger: UsageLedger | None = None
        """Where usage is also written for `turnout usage` (set by the gateway when it starts)."""
        self.time_to_first_token = Histogram(
            "turnout_llm_time_to_first_token_seconds",
            "From the request's arrival to the first streamed token, by route and model",
            ["route", "model"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.time_per_output_token = Histogram(
            "turnout_llm_time_per_output_token_seconds",
            "Mean time between output tokens after the first, per streamed completion",
            ["route", "model"],
            buckets=TPOT_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "turnout_llm_requests", "Completions answered with usage", _USAGE_LABELS, registry=registry
        )
        self.prompt_tokens = Counter(
            "turnout_llm_prompt_tokens",
            "Prompt tokens the servers reported",
            _USAGE_LABELS,
            registry=registry,
        )
        self.completion_tokens = Counter(
            "turnout_llm_completion_tokens",
            "Completion tokens the servers reported",
            _USAGE_LABELS,
            registry=registry,
        )

    def record_usage(
        self, tenant: str, principal: str, model: str, route: str, prompt: int, completion: int
    ) -> None:
        labels = (tenant, principal, model, route)
        self.requests.labels(*labels).inc()
        self.prompt_tokens.labels(*labels).inc(prompt)
        self.completion_tokens.labels(*labels).inc(completion)
        if self.ledger is not None:
            self.ledger.record(tenant, principal, model, route, prompt, completion)
