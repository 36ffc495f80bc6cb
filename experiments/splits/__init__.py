"""Splits choose, per request, which cluster serves it: one module per experiment kind.

`build_split(name, config)` compiles a validated `ExperimentConfig` into its split. Every split has
`choose(ctx) -> Assignment` (pure, called per request), `state_dict()` / `apply_dict()` (persist and
adopt state across replicas and restarts) and `shares()` (the expected split of analysed units);
each kind adds its own state changes (weights, steps, switch, mirror fractions).
"""

from __future__ import annotations

import time

from experiments.config import AbConfig, BlueGreenConfig, CanaryConfig, ShadowConfig
from experiments.splits.ab import AbSplit, AbState
from experiments.splits.base import (
    UNASSIGNED,
    Assignment,
    Clock,
    InvalidTransition,
    Split,
    SplitStatus,
)
from experiments.splits.blue_green import (
    BlueGreenSplit,
    BlueGreenState,
    CheckResult,
    StandbyCheck,
    SwitchRefused,
)
from experiments.splits.canary import BASELINE, CANDIDATE, CanarySplit, CanaryState
from experiments.splits.shadow import PRIMARY, ShadowSplit, ShadowState

AnySplit = AbSplit | CanarySplit | BlueGreenSplit | ShadowSplit


def build_split(
    name: str,
    config: AbConfig | CanaryConfig | BlueGreenConfig | ShadowConfig,
    *,
    secure_cookie: bool = False,
    clock: Clock = time.time,
) -> AnySplit:
    """The split for one experiment. `secure_cookie`: the listener is TLS, so sticky cookies get Secure."""
    if isinstance(config, AbConfig):
        return AbSplit(name, config, secure_cookie=secure_cookie, clock=clock)
    if isinstance(config, CanaryConfig):
        return CanarySplit(name, config, secure_cookie=secure_cookie, clock=clock)
    if isinstance(config, BlueGreenConfig):
        return BlueGreenSplit(name, config, clock=clock)
    return ShadowSplit(name, config, clock=clock)


__all__ = [
    "BASELINE",
    "CANDIDATE",
    "PRIMARY",
    "UNASSIGNED",
    "AbSplit",
    "AbState",
    "AnySplit",
    "Assignment",
    "BlueGreenSplit",
    "BlueGreenState",
    "CanarySplit",
    "CanaryState",
    "CheckResult",
    "InvalidTransition",
    "ShadowSplit",
    "ShadowState",
    "Split",
    "SplitStatus",
    "StandbyCheck",
    "SwitchRefused",
    "build_split",
]
