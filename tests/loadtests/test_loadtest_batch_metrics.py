"""The batcher's totals, read from a real Prometheus exposition of the gateway's batch histograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from loadtests.batch_metrics import BatchTotals, parse_batch_totals, scrape_batch_totals
from tests.support.processes import free_port


def exposition(batches: list[tuple[str, int, int]]) -> str:
    """(cluster, requests, rows) per batch, observed as the gateway's batcher does."""
    registry = CollectorRegistry()
    labels = ("model", "cluster")
    rows = Histogram("turnout_batch_size", "rows", labels, registry=registry, buckets=(1, 8, 64))
    members = Histogram("turnout_batch_members", "requests", labels, registry=registry, buckets=(1, 8, 64))
    unrelated = Histogram("turnout_request_seconds", "other", registry=registry)
    unrelated.observe(3.0)
    for cluster, requests, row_count in batches:
        rows.labels("risk", cluster).observe(row_count)
        members.labels("risk", cluster).observe(requests)
    return generate_latest(registry).decode()


def test_totals_sum_over_every_label_set() -> None:
    totals = parse_batch_totals(exposition([("risk-v1", 4, 6), ("risk-v2", 2, 2), ("risk-v1", 1, 3)]))
    assert totals == BatchTotals(batches=3.0, rows=11.0, requests=7.0)


def test_the_run_is_the_difference_of_two_scrapes() -> None:
    before = parse_batch_totals(exposition([("risk-v1", 1, 1)]))
    after = parse_batch_totals(exposition([("risk-v1", 1, 1), ("risk-v1", 8, 10), ("risk-v2", 4, 6)]))
    run = after - before
    assert run == BatchTotals(batches=2.0, rows=16.0, requests=12.0)
    assert run.requests_per_batch == 6.0
    assert run.rows_per_batch == 8.0


def test_without_batching_metrics_the_totals_are_zero() -> None:
    totals = parse_batch_totals("# HELP up up\n# TYPE up gauge\nup 1\n")
    assert totals == BatchTotals(0.0, 0.0, 0.0)
    assert totals.requests_per_batch == 0.0


def test_an_admin_listener_that_does_not_answer_gives_none() -> None:
    assert scrape_batch_totals(f"http://127.0.0.1:{free_port()}") is None
