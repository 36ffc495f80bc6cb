"""A cluster: a named set of interchangeable endpoints and how traffic to them is managed."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, field_validator, model_validator

from gateway.config.models.balancer import BalancerConfig, RoundRobinBalancer
from gateway.config.models.endpoint import EndpointConfig, endpoint_from_text
from gateway.config.models.health import HealthCheckConfig, OutlierConfig
from gateway.config.models.located import errors_at
from gateway.config.models.model_errors import ModelErrorsConfig
from gateway.config.models.resilience import CircuitBreakerConfig, RetryConfig, TimeoutsConfig
from gateway.config.models.types import Integer, Number, PositiveDuration
from gateway.config.paths import Path
from gateway.core.config_types import Duration, StrictModel

# Envoy's default panic threshold: with under half the endpoints healthy, the health data is more
# likely wrong than the whole cluster is down, so spreading load over all of them is safer.
DEFAULT_PANIC_THRESHOLD = 50.0
# Enough pooled connections for a busy model server; more mostly adds memory and file descriptors.
DEFAULT_MAX_CONNECTIONS = 256
# Re-resolving DNS names every 30 s follows typical service-discovery TTLs without hammering resolvers.
DEFAULT_DNS_REFRESH_S = 30.0

EndpointEntry = Annotated[
    EndpointConfig,
    BeforeValidator(endpoint_from_text, json_schema_input_type=str | EndpointConfig),
]


# Balancers that can scale an endpoint's weight while it ramps up.
_SLOW_START_BALANCERS = ("round_robin", "weighted_round_robin", "random", "least_request")


class PoolDiscoveryConfig(StrictModel):
    """Endpoints announced by a worker pool (`turnout workers --announce FILE`)."""

    type: Literal["pool"] = Field(default="pool", description="The discovery kind.")
    file: str = Field(
        min_length=1, description="The pool's announce file (relative to the working directory)."
    )
    poll_interval: PositiveDuration = Field(
        default=0.5, description="How often the file is checked for changes."
    )


class ClusterConfig(StrictModel):
    """Endpoints that serve the same thing, with balancing, health and resilience settings."""

    protocol: Literal["http", "oip_v2", "kserve_v1", "openai"] = Field(
        default="http",
        description="What the endpoints speak: plain http (forwarded as is), oip_v2 (Open Inference "
        "Protocol v2), kserve_v1, or openai.",
    )
    endpoints: tuple[EndpointEntry, ...] = Field(
        default=(),
        description='Upstream addresses: "host:port" strings, or {address: "host:port", weight: N}. '
        "Needed unless discovery supplies them.",
    )
    discovery: PoolDiscoveryConfig | None = Field(
        default=None, description="Where else endpoints come from: {type: pool, file: FILE}."
    )
    dns_refresh: PositiveDuration = Field(
        default=DEFAULT_DNS_REFRESH_S, description="How often DNS-name endpoints are re-resolved."
    )
    balancer: BalancerConfig = Field(
        default_factory=RoundRobinBalancer,
        description="How to pick an endpoint: a type name, or {type: NAME, ...options}.",
    )
    slow_start: Duration = Field(
        default=0.0,
        description="Ramp traffic to a new or recovered endpoint over this long; 0 disables the ramp.",
    )
    health: HealthCheckConfig | None = Field(
        default=None, description="Active health checks; absent or null means none."
    )
    outlier: OutlierConfig = Field(
        default_factory=OutlierConfig, description="Ejection of endpoints that keep failing live requests."
    )
    panic_threshold: Number = Field(
        default=DEFAULT_PANIC_THRESHOLD,
        ge=0,
        le=100,
        description="When fewer than this percentage of endpoints are healthy, balance over all of them.",
    )
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig, description="Upstream timeouts.")
    max_connections_per_endpoint: Integer = Field(
        default=DEFAULT_MAX_CONNECTIONS, ge=1, description="Pooled connections kept per endpoint."
    )
    retry: RetryConfig = Field(default_factory=RetryConfig, description="Retries; a route may override it.")
    circuit_breaker: CircuitBreakerConfig = Field(
        default_factory=CircuitBreakerConfig, description="Caps on the load sent to this cluster."
    )
    model_errors: ModelErrorsConfig | None = Field(
        default_factory=ModelErrorsConfig,
        description="5xx answers whose body says the model raised: relayed as is, never retried and "
        "never counted against the endpoint; null counts every 5xx as the endpoint's failure.",
    )

    @model_validator(mode="after")
    def _slow_start_balancer(self) -> Self:
        if self.slow_start > 0 and self.balancer.type not in _SLOW_START_BALANCERS:
            message = (
                f"slow start needs a balancer that weights endpoints ({', '.join(_SLOW_START_BALANCERS)}),"
                f" not {self.balancer.type}"
            )
            raise errors_at(type(self).__name__, [(("slow_start",), message, self.slow_start)])
        return self

    @model_validator(mode="after")
    def _has_endpoints(self) -> Self:
        if not self.endpoints and self.discovery is None:
            raise errors_at(
                type(self).__name__,
                [(("endpoints",), "give at least one endpoint, or a discovery source", self.endpoints)],
            )
        return self

    @field_validator("endpoints")
    @classmethod
    def _no_duplicates(cls, endpoints: tuple[EndpointConfig, ...]) -> tuple[EndpointConfig, ...]:
        first_index: dict[str, int] = {}
        problems: list[tuple[Path, str, Any]] = []
        for index, endpoint in enumerate(endpoints):
            earlier = first_index.setdefault(endpoint.address, index)
            if earlier != index:
                message = f"duplicate endpoint {endpoint.address} (also endpoints[{earlier}])"
                problems.append(((index,), message, endpoint.address))
        if problems:
            raise errors_at(cls.__name__, problems)
        return endpoints
