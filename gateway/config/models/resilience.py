"""Limits around upstream calls: timeouts, retries with a budget, and the circuit breaker."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, model_validator

from gateway.config.models.located import errors_at
from gateway.config.models.types import Integer, Number, PositiveDuration
from gateway.core.config_types import StrictModel

RetryOn = Literal["connect_failure", "reset", "502", "503", "504"]
ALL_RETRY_CONDITIONS: tuple[RetryOn, ...] = ("connect_failure", "reset", "502", "503", "504")
# Envoy's retry budget defaults: retries may add at most 20% load, but a quiet cluster may still have
# 3 retries in flight so one failure among few requests is retried.
DEFAULT_BUDGET_PERCENT = 20.0
DEFAULT_MIN_RETRY_CONCURRENCY = 3
# Backoff starts near one round trip inside a data centre and stays well under a request timeout.
DEFAULT_BACKOFF_BASE_S = 0.025
DEFAULT_BACKOFF_MAX_S = 0.25
# Envoy's circuit breaker defaults for a cluster.
DEFAULT_MAX_CONCURRENT = 1024
DEFAULT_MAX_PENDING = 1024


def retry_conditions(value: Any) -> Any:
    """Status codes may be written as numbers (502) or text ("502"); duplicates are dropped."""
    if not isinstance(value, list | tuple):
        return value
    items = [str(item) if isinstance(item, int) and not isinstance(item, bool) else item for item in value]
    return list(dict.fromkeys(items)) if all(isinstance(item, str) for item in items) else items


class TimeoutsConfig(StrictModel):
    """Upstream timeouts of a cluster."""

    connect: PositiveDuration = Field(default=1.0, description="Time to open a connection to an endpoint.")
    request: PositiveDuration = Field(
        default=30.0, description="Whole upstream exchange, from sending the request to the response headers."
    )
    idle: PositiveDuration = Field(
        default=60.0, description="How long a pooled upstream connection may sit idle before it is closed."
    )


class RetryConfig(StrictModel):
    """Retries of failed upstream requests, capped by a budget so retries cannot multiply an outage."""

    attempts: Integer = Field(
        default=1, ge=0, le=10, description="Retries after the first try; 0 disables retries."
    )
    on: Annotated[
        tuple[RetryOn, ...],
        BeforeValidator(retry_conditions, json_schema_input_type=list[RetryOn | Literal[502, 503, 504]]),
    ] = Field(
        default=ALL_RETRY_CONDITIONS,
        description="Failures worth retrying: connect_failure, reset (connection dropped before a "
        "response), and the statuses 502, 503, 504.",
    )
    budget_percent: Number = Field(
        default=DEFAULT_BUDGET_PERCENT,
        ge=0,
        le=100,
        description="Retries in flight may be at most this percentage of active requests.",
    )
    min_retry_concurrency: Integer = Field(
        default=DEFAULT_MIN_RETRY_CONCURRENCY,
        ge=0,
        description="Retries always allowed in flight, whatever the budget says.",
    )
    backoff_base: PositiveDuration = Field(
        default=DEFAULT_BACKOFF_BASE_S,
        description="Wait before the first retry (full jitter, doubling for each further retry).",
    )
    backoff_max: PositiveDuration = Field(default=DEFAULT_BACKOFF_MAX_S, description="Longest wait.")

    @model_validator(mode="after")
    def _max_covers_base(self) -> Self:
        if self.backoff_max < self.backoff_base:
            raise errors_at(
                type(self).__name__, [(("backoff_max",), "must be at least backoff_base", self.backoff_max)]
            )
        return self


class CircuitBreakerConfig(StrictModel):
    """Caps on a cluster's load; requests beyond them get 503 at once instead of piling up."""

    max_concurrent: Integer = Field(
        default=DEFAULT_MAX_CONCURRENT, ge=1, description="Requests in flight to the cluster."
    )
    max_pending: Integer = Field(
        default=DEFAULT_MAX_PENDING, ge=0, description="Requests waiting for an upstream connection."
    )
