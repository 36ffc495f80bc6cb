"""Several gateway processes behind one supervisor: their drift gauges and experiment statuses are
merged by taking the largest (a sum of PSIs or of status flags means nothing), while the monitor's
counters are summed as every counter is."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics_sum import sum_expositions


def _process(psi: float, rows: int) -> str:
    registry = CollectorRegistry()
    labels = ["model", "version", "arm", "feature"]
    Gauge("turnout_drift_psi", "PSI", labels, registry=registry).labels("risk", "1", "", "0").set(psi)
    Gauge("turnout_drift_state", "State", labels, registry=registry).labels("risk", "1", "", "0").set(
        2 if psi >= 0.25 else 0
    )
    status = Gauge("turnout_experiment_status", "Status", ["experiment", "kind", "status"], registry=registry)
    status.labels("risk-ab", "ab", "running").set(1)
    srm = Gauge("turnout_experiment_srm_p_value", "SRM", ["experiment"], registry=registry)
    srm.labels("risk-ab").set(0.0004)
    rows_total = Counter("turnout_monitor_rows", "Rows", ["model", "version", "arm"], registry=registry)
    rows_total.labels("risk", "1", "").inc(rows)
    return generate_latest(registry).decode()


def test_drift_and_status_take_the_largest_and_counters_add_up() -> None:
    merged = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(
            sum_expositions([_process(0.3, 100), _process(0.05, 50)]).decode()
        )
        for sample in family.samples
    }
    feature = (("arm", ""), ("feature", "0"), ("model", "risk"), ("version", "1"))
    assert merged[("turnout_drift_psi", feature)] == 0.3
    assert merged[("turnout_drift_state", feature)] == 2
    status = (("experiment", "risk-ab"), ("kind", "ab"), ("status", "running"))
    assert merged[("turnout_experiment_status", status)] == 1
    # Every process reads the same store: the p-value is the same in each, not added up.
    assert merged[("turnout_experiment_srm_p_value", (("experiment", "risk-ab"),))] == 0.0004
    assert merged[("turnout_monitor_rows_total", (("arm", ""), ("model", "risk"), ("version", "1")))] == 150
