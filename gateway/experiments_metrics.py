"""Experiment bookkeeping as Prometheus families, read at scrape time (nothing per request).

turnout_experiment_feedback_total{result}   feedback answered: accepted, invalid, out_of_bounds,
                                            unknown (404: no exposure has that id), unavailable
turnout_experiment_events_total{outcome}    recorder: accepted, dropped (queue full), written,
                                            lost (not written by shutdown's deadline)
turnout_experiment_events_queued            events accepted and not yet written (what a crash
                                            would lose)
turnout_experiment_status{experiment,kind,status}  1 for each experiment's current status (running,
                                            paused, promoted, rolled_back): alerts on a rollback
turnout_experiment_srm_p_value{experiment}  the always-valid (sequential) p-value of the sample
                                            ratio test on units per arm, for each A/B test and
                                            canary: alerts on a split that does not hold
turnout_experiment_srm{experiment}          1 when the experiment's health check flags a mismatch
turnout_experiment_units{experiment,arm}    units seen per arm in the analysed phase

The SRM families come from the event store, which a scrape cannot wait for: a scrape exports the
last check and, when it is older than SRM_REFRESH_S, starts the next one in the background (one at
a time), so the values trail the traffic by at most a scrape interval plus SRM_REFRESH_S. The test
is the sequential one (`experiments.verdict.check_health`): a p-value valid however often Prometheus
looks, where a chi-square checked every scrape would raise false alarms many times its alpha.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from experiments.splits.ab import AbSplit
from experiments.splits.canary import CanarySplit
from experiments.verdict import check_health

if TYPE_CHECKING:
    from gateway.experiments_runtime import ExperimentsService


_log = logging.getLogger("turnout.experiments")

# How old the last SRM check may be before a scrape starts the next: one read of each experiment's
# per-arm unit counts from the store; every 10 s is far below what a store notices, and a mismatch
# worth paging on persists for minutes (the alert waits 10).
SRM_REFRESH_S = 10.0


@dataclass(frozen=True, slots=True)
class SrmCheck:
    """The last sample-ratio check of one experiment."""

    p_value: float
    """Always-valid p-value of the sequential test (1 before any unit)."""
    mismatch: bool
    units: dict[str, int]


class SrmWatch:
    """The last SRM check of every A/B test and canary, refreshed in the background from the store."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._checked_at = -SRM_REFRESH_S
        self._task: asyncio.Task[None] | None = None
        self.checks: dict[str, SrmCheck] = {}

    def refresh_if_stale(self, service: ExperimentsService) -> None:
        """Start a check when the last one is old and none runs; only from the event loop's thread."""
        if self._task is not None or self._clock() - self._checked_at < SRM_REFRESH_S:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # a scrape outside the gateway's loop (a test's registry): the last check stands
        self._checked_at = self._clock()
        self._task = loop.create_task(self._refresh(service))

    async def _refresh(self, service: ExperimentsService) -> None:
        try:
            self.checks = await srm_checks(service)
        except Exception:  # a store that is down: keep the last check, try again next time
            _log.warning("the experiments' SRM check could not read the event store", exc_info=True)
        finally:
            self._task = None


async def srm_checks(service: ExperimentsService) -> dict[str, SrmCheck]:
    """Each A/B test's and canary's SRM check, on the phase its analysis covers."""
    checks: dict[str, SrmCheck] = {}
    for name, split in list(service.splits.items()):
        if not isinstance(split, AbSplit | CanarySplit):
            continue  # shadows and blue/green switches split no units between arms
        phase, shares = split.analysed_phase()
        data = await service.store.phase_data(name, phase)
        srm = check_health(data, shares).srm
        units = {arm: data.arm(arm).units for arm, share in shares.items() if share > 0}
        if srm is None:  # one arm, or no unit yet: nothing to compare
            checks[name] = SrmCheck(1.0, False, units)
        else:
            checks[name] = SrmCheck(srm.p_value_sequential, srm.mismatch, units)
    return checks


class ExperimentsCollector(Collector):
    def __init__(self, service: Callable[[], ExperimentsService | None]) -> None:
        self._service = service
        self.srm = SrmWatch()

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
        self.srm.refresh_if_stale(service)
        yield from (feedback, events, queued, status, *_srm_families(self.srm.checks))


def _srm_families(checks: dict[str, SrmCheck]) -> tuple[GaugeMetricFamily, ...]:
    p_value = GaugeMetricFamily(
        "turnout_experiment_srm_p_value",
        "Always-valid p-value of the sample ratio test on units per arm (low: the split does not hold)",
        labels=["experiment"],
    )
    flagged = GaugeMetricFamily(
        "turnout_experiment_srm",
        "1 when the experiment's sample ratio test flags a mismatch",
        labels=["experiment"],
    )
    units = GaugeMetricFamily(
        "turnout_experiment_units", "Units seen per arm in the analysed phase", labels=["experiment", "arm"]
    )
    for name, check in sorted(checks.items()):
        p_value.add_metric([name], check.p_value)
        flagged.add_metric([name], 1.0 if check.mismatch else 0.0)
        for arm, count in sorted(check.units.items()):
            units.add_metric([name, arm], float(count))
    return p_value, flagged, units
