"""The typed, frozen models of a turnout config file, one module per section."""

from gateway.config.models.balancer import (
    AnyBalancer,
    BalancerConfig,
    BalancerType,
    ConsistentHashBalancer,
    LeastQueueBalancer,
    LeastRequestBalancer,
    PeakEwmaBalancer,
    RandomBalancer,
    RoundRobinBalancer,
    WeightedRoundRobinBalancer,
)
from gateway.config.models.cluster import ClusterConfig, PoolDiscoveryConfig
from gateway.config.models.endpoint import EndpointConfig, join_address, split_address
from gateway.config.models.filters import FilterSpec
from gateway.config.models.gateway import GatewayConfig, StateConfig
from gateway.config.models.health import HealthCheckConfig, OutlierConfig
from gateway.config.models.listen import AccessLogConfig, AdminConfig, ListenConfig, TlsConfig
from gateway.config.models.match import HeaderMatch, HttpMethod, MatchConfig
from gateway.config.models.resilience import CircuitBreakerConfig, RetryConfig, RetryOn, TimeoutsConfig
from gateway.config.models.route import BackendConfig, HeaderEdits, RewriteConfig, RouteConfig

__all__ = [
    "AccessLogConfig",
    "AdminConfig",
    "AnyBalancer",
    "BackendConfig",
    "BalancerConfig",
    "BalancerType",
    "CircuitBreakerConfig",
    "ClusterConfig",
    "ConsistentHashBalancer",
    "EndpointConfig",
    "FilterSpec",
    "GatewayConfig",
    "HeaderEdits",
    "HeaderMatch",
    "HealthCheckConfig",
    "HttpMethod",
    "LeastQueueBalancer",
    "LeastRequestBalancer",
    "ListenConfig",
    "MatchConfig",
    "OutlierConfig",
    "PeakEwmaBalancer",
    "PoolDiscoveryConfig",
    "RandomBalancer",
    "RetryConfig",
    "RetryOn",
    "RewriteConfig",
    "RoundRobinBalancer",
    "RouteConfig",
    "StateConfig",
    "TimeoutsConfig",
    "TlsConfig",
    "WeightedRoundRobinBalancer",
    "join_address",
    "split_address",
]
