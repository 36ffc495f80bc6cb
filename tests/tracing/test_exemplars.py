"""Exemplars: a traced request's trace id on its latency bucket, served as OpenMetrics on request."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from gateway.observability import LATENCY_BUCKETS, FastHistogram
from tests.support.processes import GatewayProcess, free_port, start_gateway
from tests.tracing.otlp_receiver import otlp_receiver

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def _config(upstream_port: int, collector: str) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "admin": {"host": "127.0.0.1", "port": free_port()},
        "access_log": {"enabled": False},
        "tracing": {"enabled": True, "sampling_ratio": 0.0, "endpoint": collector, "service_name": "gw"},
        "clusters": {"up": {"endpoints": [f"127.0.0.1:{upstream_port}"]}},
        "routes": [
            {"name": "traced", "match": {"prefix": "/traced/"}, "backend": {"cluster": "up"}},
            {"name": "plain", "match": {"prefix": "/"}, "backend": {"cluster": "up"}},
        ],
    }


async def _start(config: dict[str, Any], tmp_path: Path) -> GatewayProcess:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return await asyncio.to_thread(
        start_gateway, path, config["listen"]["port"], config["admin"]["port"], tmp_path
    )


def _durations(families: Any) -> list[Any]:
    (family,) = [f for f in families if f.name == "turnout_request_duration_seconds"]
    return [s for s in family.samples if s.name.endswith("_bucket")]


async def test_a_traced_requests_trace_id_is_its_latency_buckets_exemplar(tmp_path: Path) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    upstream_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
    traced, untraced = secrets.token_hex(16), secrets.token_hex(16)
    try:
        async with otlp_receiver() as receiver:
            gateway = await _start(_config(upstream_port, receiver.endpoint), tmp_path)
            try:
                async with aiohttp.ClientSession() as session:
                    # The client samples one request; the gateway's ratio (0) leaves out the rest.
                    sampled = {"traceparent": f"00-{traced}-{secrets.token_hex(8)}-01"}
                    left_out = {"traceparent": f"00-{untraced}-{secrets.token_hex(8)}-00"}
                    async with session.get(f"{gateway.url}/traced/a", headers=sampled) as response:
                        assert response.status == 200
                    for headers in (left_out, {}):
                        async with session.get(f"{gateway.url}/plain", headers=headers) as response:
                            assert response.status == 200
                    url = f"{gateway.admin_url}/metrics"
                    async with session.get(url, headers={"Accept": OPENMETRICS}) as response:
                        assert response.status == 200
                        assert response.content_type == "application/openmetrics-text"
                        openmetrics = await response.text()
                    async with session.get(url) as response:
                        assert response.content_type == "text/plain"
                        text = await response.text()
            finally:
                assert gateway.stop() == 0, gateway.log()
    finally:
        await runner.cleanup()

    buckets = _durations(parse_openmetrics(openmetrics))  # type: ignore[no-untyped-call]
    with_exemplar = [s for s in buckets if s.exemplar is not None]
    # Exactly one exemplar: the traced request's, on the traced route, in the bucket its latency fell in.
    (sample,) = with_exemplar
    assert sample.labels["route"] == "traced"
    assert sample.exemplar.labels == {"trace_id": traced}
    assert 0 < sample.exemplar.value <= float(sample.labels["le"])
    lower = [b for b in LATENCY_BUCKETS if b < float(sample.labels["le"])]
    assert not lower or sample.exemplar.value > lower[-1]
    assert sample.value == 1.0
    # The requests left out counted all the same, without exemplars.
    plain_inf = [s for s in buckets if s.labels["route"] == "plain" and s.labels["le"] == "+Inf"]
    assert [s.value for s in plain_inf] == [2.0]
    # The Prometheus text has no exemplars and the same counts.
    assert "trace_id" not in text
    text_counts = {tuple(sorted(s.labels.items())): s.value for s in _durations(parse_text(text))}
    assert text_counts == {tuple(sorted(s.labels.items())): s.value for s in buckets}


def test_a_histogram_without_traced_observations_builds_no_exemplars() -> None:
    histogram = FastHistogram((0.1, 1.0))
    histogram.observe(0.05)
    histogram.observe(5.0)
    assert histogram.exemplars is None
    assert histogram.cumulative() == [("0.1", 1.0), ("1.0", 1.0), ("+Inf", 2.0)]
    histogram.observe_traced(0.5, "a" * 32)
    histogram.observe_traced(0.7, "b" * 32)  # the latest in a bucket wins
    buckets = histogram.cumulative()
    assert [b[:2] for b in buckets] == [("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert len(buckets[0]) == 2 and len(buckets[2]) == 2
    assert buckets[1][2].labels == {"trace_id": "b" * 32} and buckets[1][2].value == 0.7
    assert (histogram.count, histogram.sum) == (4, 0.05 + 5.0 + 0.5 + 0.7)
