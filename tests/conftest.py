"""Shared fixtures: real upstream processes and gateways on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import Process, free_port, start_upstream


@pytest.fixture(scope="session")
def session_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model repository (`inference_workers.examples.build_models`), built once a session:
    training it takes seconds of CPU, and the workers and tests that use it only read it (a test
    that changes a repository copies the models it needs)."""
    from inference_workers.examples.build_models import build

    root = tmp_path_factory.mktemp("demo-models")
    build(root)
    return root


@pytest.fixture(scope="session")
def upstream_a(session_logs: Path) -> Iterator[Process]:
    process = start_upstream("a", log_dir=session_logs)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def upstream_b(session_logs: Path) -> Iterator[Process]:
    process = start_upstream("b", log_dir=session_logs)
    yield process
    process.stop()


def gateway_config(
    endpoints: list[str],
    *,
    cluster: dict[str, Any] | None = None,
    routes: list[dict[str, Any]] | None = None,
    listen: dict[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A config dict with one cluster `up` and (by default) one catch-all route."""
    return {
        "listen": {"host": "127.0.0.1", "port": free_port(), **(listen or {})},
        "admin": {"host": "127.0.0.1", "port": free_port()},
        "access_log": {"enabled": False},
        "clusters": {"up": {"endpoints": endpoints, **(cluster or {})}},
        "routes": routes or [{"name": "all", "match": {"prefix": "/"}, "backend": {"cluster": "up"}}],
        **top,
    }


@pytest.fixture
def make_gateway(tmp_path: Path) -> Callable[[dict[str, Any]], Any]:
    """Start an in-process gateway (a real listener on loopback) from a config dict."""
    from gateway.loading import load_gateway_config
    from gateway.server import Gateway

    @asynccontextmanager
    async def start(config: dict[str, Any]) -> AsyncIterator[Gateway]:
        path = tmp_path / f"gateway-{config['listen']['port']}.yaml"
        path.write_text(yaml.safe_dump(config))
        gateway = Gateway(load_gateway_config(path), path)
        await gateway.start()
        try:
            yield gateway
        finally:
            await gateway.shutdown(drain_timeout=2.0)

    return start
