"""A one-line description of a valid config, for ``turnout validate``."""

from __future__ import annotations

from gateway.config.models import GatewayConfig, join_address


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def summarize(config: GatewayConfig) -> str:
    """``ok: 2 routes, 1 cluster (3 endpoints), listening on 127.0.0.1:8080, admin on 127.0.0.1:9901``."""
    endpoints = sum(len(cluster.endpoints) for cluster in config.clusters.values())
    return (
        f"ok: {_count(len(config.routes), 'route')}, {_count(len(config.clusters), 'cluster')} "
        f"({_count(endpoints, 'endpoint')}), "
        f"listening on {join_address(config.listen.host, config.listen.port)}, "
        f"admin on {join_address(config.admin.host, config.admin.port)}"
    )
