"""Loading the gateway's config with every check the composed gateway knows (plugins included)."""

from __future__ import annotations

from pathlib import Path

from gateway.config import GatewayConfig, load_config
from gateway.filters_config import check_filters


def load_gateway_config(path: Path | str) -> GatewayConfig:
    """Load and validate a config file, filter options included; raises ConfigError."""
    return load_config(path, checks=(check_filters,))
