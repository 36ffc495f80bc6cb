"""turnout_experiment_srm_p_value and its companions: the sequential SRM check of each A/B test, read
from the event store in the background of a scrape, as the SRM alert needs it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from experiments.config import AbConfig
from experiments.splits import AbSplit
from experiments.store.base import ArmData, PhaseData
from gateway.experiments_metrics import ExperimentsCollector


def _config() -> AbConfig:
    return AbConfig.model_validate(
        {
            "kind": "ab",
            "unit": "header:x-user-id",
            "arms": {"control": {"cluster": "v1"}, "treatment": {"cluster": "v2"}},
            "metrics": ["latency"],
        }
    )


class _Store:
    """Units per arm as a store would report them; counts how often it was read."""

    def __init__(self, units: dict[str, dict[str, int]]) -> None:
        self.units = units
        self.reads = 0

    async def phase_data(self, experiment: str, phase: int) -> PhaseData:
        self.reads += 1
        arms = {
            arm: ArmData(arm, units=count, exposures=count) for arm, count in self.units[experiment].items()
        }
        return PhaseData(experiment, phase, arms)


def _service(store: _Store) -> Any:
    stats = SimpleNamespace(accepted=0, dropped=0, written=0, lost=0, queued=0)
    return SimpleNamespace(
        splits={name: AbSplit(name, _config()) for name in store.units},
        store=store,
        feedback=SimpleNamespace(counts={}),
        recorder=SimpleNamespace(stats=lambda: stats),
    )


async def _scraped_until(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    for _ in range(200):
        generate_latest(registry)
        value = registry.get_sample_value(name, labels)
        if value is not None:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name}{labels} never exported")


async def test_a_split_that_does_not_hold_exports_a_tiny_p_value_and_a_flag() -> None:
    # 50/50 configured; 600 against 400 units is a mismatch, 505 against 495 is chance.
    store = _Store({"skewed": {"control": 600, "treatment": 400}, "fine": {"control": 505, "treatment": 495}})
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ExperimentsCollector(lambda: _service(store)))
    skewed = await _scraped_until(registry, "turnout_experiment_srm_p_value", {"experiment": "skewed"})
    fine = registry.get_sample_value("turnout_experiment_srm_p_value", {"experiment": "fine"})
    assert skewed < 0.001 and fine is not None and fine > 0.1
    assert registry.get_sample_value("turnout_experiment_srm", {"experiment": "skewed"}) == 1.0
    assert registry.get_sample_value("turnout_experiment_srm", {"experiment": "fine"}) == 0.0
    units = {"experiment": "skewed", "arm": "treatment"}
    assert registry.get_sample_value("turnout_experiment_units", units) == 400.0


async def test_scrapes_reuse_the_last_check_until_it_is_stale() -> None:
    store = _Store({"ab": {"control": 10, "treatment": 12}})
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ExperimentsCollector(lambda: _service(store)))
    await _scraped_until(registry, "turnout_experiment_srm_p_value", {"experiment": "ab"})
    for _ in range(20):  # a busy Prometheus (or several) scraping: the store is not read again
        generate_latest(registry)
        await asyncio.sleep(0)
    assert store.reads == 1


async def test_a_store_that_fails_keeps_the_last_check_and_the_scrape_answers() -> None:
    store = _Store({"ab": {"control": 600, "treatment": 400}})
    collector = ExperimentsCollector(lambda: _service(store))
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    await _scraped_until(registry, "turnout_experiment_srm_p_value", {"experiment": "ab"})

    async def broken(experiment: str, phase: int) -> PhaseData:
        raise ConnectionError("store down")

    store.phase_data = broken  # type: ignore[method-assign]
    collector.srm._checked_at = -1e9  # stale: the next scrape checks again, and fails
    generate_latest(registry)
    for _ in range(50):
        await asyncio.sleep(0)
    assert collector.srm._task is None
    value = registry.get_sample_value("turnout_experiment_srm_p_value", {"experiment": "ab"})
    assert value is not None and value < 0.001
