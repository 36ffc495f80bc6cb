"""Every example config shipped in config/examples/ loads cleanly, with no environment set."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config, summarize

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "config" / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert any(path.name == "quickstart.yaml" for path in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_validates(path: Path) -> None:
    config = load_config(path, env={})
    assert summarize(config).startswith("ok: ")


def test_quickstart_says_what_it_promises() -> None:
    config = load_config(next(path for path in EXAMPLES if path.name == "quickstart.yaml"), env={})
    assert (config.listen.host, config.listen.port) == ("127.0.0.1", 8080)
    assert (config.admin.host, config.admin.port) == ("127.0.0.1", 9901)
    cluster = config.clusters["upstreams"]
    assert [endpoint.address for endpoint in cluster.endpoints] == ["127.0.0.1:9101", "127.0.0.1:9102"]
    assert cluster.balancer.type == "round_robin"
    assert cluster.health is not None
    assert (cluster.health.path, cluster.health.interval) == ("/healthz", 1.0)
    assert (cluster.health.unhealthy_threshold, cluster.health.healthy_threshold) == (2, 1)
    assert (cluster.retry.attempts, cluster.retry.on) == (1, ("connect_failure",))
    (route,) = config.routes
    assert (route.name, route.match.prefix, route.backend.cluster) == ("all", "/", "upstreams")
    assert summarize(config) == (
        "ok: 1 route, 1 cluster (2 endpoints), listening on 127.0.0.1:8080, admin on 127.0.0.1:9901"
    )
