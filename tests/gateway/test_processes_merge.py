"""The supervisor's admin port, without processes: summed expositions and merged cluster views."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics_sum import sum_expositions
from gateway.supervisor_admin import merge_clusters


def _exposition(requests: int, latency: float, inflight: int) -> str:
    registry = CollectorRegistry()
    Counter("turnout_x_requests", "Requests", ["route"], registry=registry).labels("a").inc(requests)
    Histogram("turnout_x_seconds", "Latency", buckets=(0.1, 1.0), registry=registry).observe(latency)
    Gauge("turnout_x_inflight", "In flight", registry=registry).set(inflight)
    Info("turnout_x_build", "Build", registry=registry).info({"version": "1"})
    return generate_latest(registry).decode()


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_counters_histograms_and_gauges_are_summed_and_created_dropped() -> None:
    total = _samples(sum_expositions([_exposition(3, 0.05, 2), _exposition(4, 0.5, 1)]))
    assert total[("turnout_x_requests_total", (("route", "a"),))] == 7
    assert total[("turnout_x_seconds_bucket", (("le", "0.1"),))] == 1
    assert total[("turnout_x_seconds_bucket", (("le", "1.0"),))] == 2
    assert total[("turnout_x_seconds_count", ())] == 2
    assert total[("turnout_x_seconds_sum", ())] == 0.55
    assert total[("turnout_x_inflight", ())] == 3
    assert total[("turnout_x_build_info", (("version", "1"),))] == 1  # a flag, not an amount
    assert not any(name.endswith("_created") for name, _ in total)


def _endpoint(address: str, **fields: Any) -> dict[str, Any]:
    base = {
        "address": address,
        "hostname": None,
        "weight": 1,
        "healthy": True,
        "available": True,
        "ejected": False,
        "ejected_seconds_left": 0.0,
        "ejection_count": 0,
        "drained": False,
        "inflight": 0,
        "ewma_ms": 0.0,
        "queue_depth": None,
        "total_requests": 0,
        "total_failures": 0,
    }
    return {**base, **fields}


def test_cluster_views_add_counts_and_agree_on_health() -> None:
    first = {
        "up": {
            "protocol": "http",
            "circuit_breaker_rejections": 1,
            "retries": 2,
            "endpoints": [
                _endpoint("10.0.0.1:80", inflight=2, total_requests=10, ewma_ms=4.0),
                _endpoint("10.0.0.2:80", total_requests=5),
            ],
        }
    }
    second = {
        "up": {
            "protocol": "http",
            "circuit_breaker_rejections": 0,
            "retries": 3,
            "endpoints": [
                _endpoint("10.0.0.1:80", inflight=1, total_requests=20, ewma_ms=2.0, queue_depth=4),
                _endpoint("10.0.0.2:80", available=False, ejected=True, ejected_seconds_left=3.0),
            ],
        }
    }
    merged = merge_clusters([first, second])["up"]
    assert (merged["circuit_breaker_rejections"], merged["retries"]) == (1, 5)
    one, two = merged["endpoints"]
    assert (one["inflight"], one["total_requests"], one["ewma_ms"], one["queue_depth"]) == (3, 30, 3.0, 4)
    assert one["available"] is True and one["processes_available"] == 2
    assert two["available"] is False and two["ejected"] is True and two["processes_available"] == 1
    assert two["ejected_seconds_left"] == 3.0 and two["total_requests"] == 5
