"""Experiment bookkeeping as Prometheus families, read at scrape time (nothing per request).

turnout_experiment_feedback_total{result}   feedback answered: accepted, invalid, out_of_bounds,
                                            unknown (404: no exposure has that id), unavailable
turnout_experiment_events_total{outcome}    recorder: accepted, dropped (queue full), written,
                                            lost (not written by shutdown's deadline)
turnout_experiment_events_queued            events accepted and not yet written (what a crash
                                            would lose)
turnout_experiment_status{experiment,kind,status}  1 for each experiment's current status (running,
                                            paused, promoted, rolled_back): alerts on a rollback
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.experiments_runtime import ExperimentsService


class ExperimentsCollector(Collector):
    def __init__(self, service: Callable[[], ExperimentsService | None]) -> None:
        self._service = service

    def collect(self) -> Iterator[Any]:
        service = self._service()
        if service is None:
            return
        feedback = CounterMetricFamily(
            "turnout_experiment_feedback", "Feedback posts by how they were answered", labels=["result"]
        )
        for result, count in service.feedback.counts.items():
            feedback.add_metric([result], float(count))
        stats = service.recorder.stats()
        events = CounterMetricFamily(
            "turnout_experiment_events", "Experiment events by what became of them", labels=["outcome"]
        )
        for outcome, count in (
            ("accepted", stats.accepted),
            ("dropped", stats.dropped),
            ("written", stats.written),
            ("lost", stats.lost),
        ):
            events.add_metric([outcome], float(count))
        queued = GaugeMetricFamily(
            "turnout_experiment_events_queued", "Experiment events accepted and not yet written"
        )
        queued.add_metric([], float(stats.queued))
        status = GaugeMetricFamily(
            "turnout_experiment_status",
            "1 for each experiment's current status",
            labels=["experiment", "kind", "status"],
        )
        for name, split in list(service.splits.items()):
            state = split.state_dict()
            status.add_metric([name, str(state.get("kind", "")), str(state.get("status", ""))], 1.0)
        yield from (feedback, events, queued, status)
