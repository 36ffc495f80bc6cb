"""Loading and validating turnout's YAML configuration.

``load_config(path)`` returns a frozen, typed GatewayConfig or raises ConfigError whose lines read
``config/x.yaml:14: routes[0].backend.cluster: unknown cluster 'fraud-v3' (known: fraud-v1, fraud-v2)``.
"""

from gateway.config.errors import ConfigError
from gateway.config.explain import explain_validation_error
from gateway.config.loader import ConfigCheck, load_config, load_config_text
from gateway.config.models import (
    AccessLogConfig,
    AdminConfig,
    AnyBalancer,
    BackendConfig,
    BalancerConfig,
    BalancerType,
    CircuitBreakerConfig,
    ClusterConfig,
    ConsistentHashBalancer,
    EndpointConfig,
    FilterSpec,
    GatewayConfig,
    HeaderEdits,
    HeaderMatch,
    HealthCheckConfig,
    HttpMethod,
    LeastQueueBalancer,
    LeastRequestBalancer,
    ListenConfig,
    MatchConfig,
    OutlierConfig,
    PeakEwmaBalancer,
    RandomBalancer,
    RetryConfig,
    RetryOn,
    RewriteConfig,
    RoundRobinBalancer,
    RouteConfig,
    TimeoutsConfig,
    WeightedRoundRobinBalancer,
)
from gateway.config.paths import Issue, Path, format_path
from gateway.config.schema_document import json_schema, render_json_schema
from gateway.config.summary import summarize

__all__ = [
    "AccessLogConfig",
    "AdminConfig",
    "AnyBalancer",
    "BackendConfig",
    "BalancerConfig",
    "BalancerType",
    "CircuitBreakerConfig",
    "ClusterConfig",
    "ConfigCheck",
    "ConfigError",
    "ConsistentHashBalancer",
    "EndpointConfig",
    "FilterSpec",
    "GatewayConfig",
    "HeaderEdits",
    "HeaderMatch",
    "HealthCheckConfig",
    "HttpMethod",
    "Issue",
    "LeastQueueBalancer",
    "LeastRequestBalancer",
    "ListenConfig",
    "MatchConfig",
    "OutlierConfig",
    "Path",
    "PeakEwmaBalancer",
    "RandomBalancer",
    "RetryConfig",
    "RetryOn",
    "RewriteConfig",
    "RoundRobinBalancer",
    "RouteConfig",
    "TimeoutsConfig",
    "WeightedRoundRobinBalancer",
    "explain_validation_error",
    "format_path",
    "json_schema",
    "load_config",
    "load_config_text",
    "render_json_schema",
    "summarize",
]
