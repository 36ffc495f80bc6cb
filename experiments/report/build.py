"""Building the report of an A/B test or canary from its store.

Every statistic of the current phase comes from `experiments.analysis.status_of` (the same status the
admin API serves); the report adds what a reader needs around it: the setup and allocation history,
the health banner, latency quantiles with intervals, the controller's timeline, and the data of the
plots (time series from the raw events, CDFs from the latency histograms). The store is read once per
kind of data; on a live store the raw rows may include a few events newer than the status.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from experiments.analysis import settings_of, status_of
from experiments.analysis_events import ExperimentEvents
from experiments.analysis_settings import AnalysisSettings
from experiments.config import AbConfig, BlueGreenConfig, CanaryConfig, ShadowConfig
from experiments.event_cache import EventCache
from experiments.event_reader import load_events
from experiments.report.header import build_header
from experiments.report.health import health_banner
from experiments.report.latency import latency_cdf, quantile_rows
from experiments.report.methods import method_notes
from experiments.report.model import ArmSummary, LiftSeries, PlotData, Report
from experiments.report.novelty import novelty_rows
from experiments.report.series import exposure_series, lift_series, phase_starts, series_metric
from experiments.report.timeline import shadow_agreement, timeline
from experiments.splits import AnySplit
from experiments.splits.ab import AbSplit
from experiments.splits.canary import CanarySplit
from experiments.status import ExperimentStatus
from experiments.store.base import EventStore, PhaseData

# The controller's latest decisions read for the timeline: at a 10 s interval, more than a day of
# ticks, and holds fold together, so the timeline stays short.
TIMELINE_DECISIONS = 10_000


def _arm_summaries(status: ExperimentStatus, clusters: dict[str, str]) -> tuple[ArmSummary, ...]:
    analysed = sum(arm.units for arm in status.arms if arm.expected_share > 0.0)
    return tuple(
        ArmSummary(
            name=arm.arm,
            cluster=clusters.get(arm.arm, ""),
            units=arm.units,
            exposures=arm.exposures,
            requests=arm.requests,
            expected_share=arm.expected_share,
            observed_share=arm.units / analysed if analysed else math.nan,
            metrics=dict(arm.metrics),
            latency_quantiles=dict(arm.latency_quantiles),
            labels={output: dict(shares) for output, shares in arm.labels.items()},
        )
        for arm in status.arms
    )


def _lift(
    status: ExperimentStatus, events: ExperimentEvents, settings: AnalysisSettings
) -> tuple[str | None, tuple[LiftSeries, ...]]:
    """The plotted metric and its series per treatment: the first with data of the goals (the
    metrics that decide: a changed goal first), then of the guardrails (a regressed one first). The
    band is the confidence sequence intersected over every look, as the comparison reports it."""
    comparisons = status.comparisons
    ordered = [
        *(c.metric for c in comparisons if c.role == "goal" and c.direction in ("better", "worse")),
        *(c.metric for c in comparisons if c.role == "goal"),
        *(c.metric for c in comparisons if c.role == "guardrail" and c.direction == "worse"),
        *(c.metric for c in comparisons if c.role == "guardrail"),
    ]
    candidates = [metric for metric in dict.fromkeys(ordered) if series_metric(metric)]
    treatments = [arm.arm for arm in status.arms[1:]]
    first: tuple[str | None, tuple[LiftSeries, ...]] = (None, ())
    for metric in candidates:
        lift = tuple(lift_series(events, status.control, t, metric, settings) for t in treatments)
        if any(series.time for series in lift):
            return metric, lift
        if first[0] is None:
            first = (metric, lift)
    return first


def _lift_note(metric: str | None, lift: Sequence[LiftSeries], burn_in: int) -> str:
    if metric is None:
        return "no configured metric has a per-unit time series (error_rate, latency or feedback:NAME)"
    if not any(series.time for series in lift):
        return f"too little data for {metric}: each arm needs at least 2 units with data"
    if not any(math.isfinite(low) for series in lift for low in series.cs_low):
        return f"the confidence sequence stays unbounded until every arm has {burn_in} units"
    return ""


def _plots(
    status: ExperimentStatus, events: ExperimentEvents, data: PhaseData, settings: AnalysisSettings
) -> PlotData:
    arms = [arm.arm for arm in status.arms]
    metric, lift = _lift(status, events, settings)
    exposures = exposure_series(events, arms)
    cdfs = tuple(latency_cdf(data.arm(arm)) for arm in arms)
    notes = {"lift": _lift_note(metric, lift, settings.burn_in)}
    notes["exposures"] = "" if exposures else "no analysed exposures yet"
    empty = [cdf.arm for cdf in cdfs if cdf.requests == 0]
    notes["latency"] = f"no requests with a latency yet in: {', '.join(empty)}" if empty else ""
    return PlotData(metric, lift, exposures, phase_starts(events), cdfs, notes)


async def build_report(
    name: str,
    config: AbConfig | CanaryConfig | BlueGreenConfig | ShadowConfig,
    split: AnySplit,
    store: EventStore,
    *,
    now: float,
    cache: EventCache | None = None,
) -> Report:
    """The report of experiment `name` in the phase its analysis covers (`status_of`), as of
    wall-clock time `now`.

    Any experiment's config and split are accepted (callers hold them as the unions), but only an
    A/B test or a canary, with its own kind of split, has a report: anything else is a ValueError.
    `cache`: the store's `EventCache` (the admin API's), so the raw events are read incrementally.
    """
    if not (
        (isinstance(config, AbConfig) and isinstance(split, AbSplit))
        or (isinstance(config, CanaryConfig) and isinstance(split, CanarySplit))
    ):
        raise ValueError(f"experiment '{name}': reports cover A/B tests and canaries ({split.kind} given)")
    status = await status_of(name, config, split, store, now=now, cache=cache)
    data = await store.phase_data(name, status.phase)
    phase = status.phase
    events = await (cache.events(name, phase) if cache is not None else load_events(store, name, phase))
    entries = timeline(await store.decisions(name, limit=TIMELINE_DECISIONS))
    settings = settings_of(config)
    metrics = list(status.arms[0].metrics) if status.arms else list(config.metrics)
    header = build_header(
        name,
        config,
        split,
        events=events,
        stored_phases=await store.phases(name),
        entries=entries,
        settings=settings,
        metrics=metrics,
        generated_at=now,
    )
    treatments = [arm.arm for arm in status.arms[1:]]
    return Report(
        experiment=name,
        kind=split.kind,
        generated_at=now,
        header=header,
        health=health_banner(status.health, status.arms, settings.burn_in, events.unusable_feedback),
        decision=status.decision,
        verdict=status.decision,
        arms=_arm_summaries(status, dict(split.clusters)),
        goals=tuple(c for c in status.comparisons if c.role == "goal"),
        guardrails=tuple(c for c in status.comparisons if c.role == "guardrail"),
        descriptive=tuple(c for c in status.comparisons if c.role == "descriptive"),
        latency_quantiles=quantile_rows(data, status.control, treatments, settings.alpha, events),
        timeline=entries,
        shadow=shadow_agreement(entries),
        plots=_plots(status, events, data, settings),
        methods=method_notes(
            canary=isinstance(split, CanarySplit),
            bayesian=settings.bayesian,
            segments=bool(settings.segments),
        ),
        raw_events=(
            f"The raw events behind this report: experiments.store.export_events(store, '{name}', kind, "
            "path, fmt) writes one kind (exposures, outcomes or feedback) as CSV, or as Parquet when "
            "pyarrow is installed."
        ),
        novelty=novelty_rows(
            events,
            status.control,
            treatments,
            [c.metric for c in status.comparisons if c.role == "goal"],
            settings.alpha,
        ),
    )
