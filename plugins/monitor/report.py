"""A model's monitoring report, as `GET /admin/monitoring/MODEL` serves it.

The model's series (one per version and experiment arm, from every route that monitors it) are
summed into the top-level `features` and `outputs`; each series is also listed on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from plugins.monitor.filter import MonitorFilter
from plugins.monitor.series import ModelSeries, merged


def model_report(filters: Iterable[MonitorFilter], model: str) -> dict[str, Any] | None:
    """The report of `model`, or None when no monitor filter watches it."""
    watching = [filter_ for filter_ in filters if model in filter_.config.models]
    if not watching:
        return None
    parts: list[ModelSeries] = []
    errors: list[str] = []
    reference = None
    for filter_ in watching:
        parts.extend(one for key, one in filter_.series.items() if key[0] == model)
        if model in filter_.errors and filter_.errors[model] not in errors:
            errors.append(filter_.errors[model])
        reference = reference or filter_.references.get(model)
    config = watching[0].config
    report: dict[str, Any] = {
        "model": model,
        "reference": None
        if reference is None
        else {"source": reference.source, "rows": reference.rows, "features": reference.width},
        "thresholds": {
            "psi_warn": config.psi_warn,
            "psi_alert": config.psi_alert,
            "min_samples": config.min_samples,
            "window": config.window,
        },
        "sample_rate": config.sample_rate,
        "errors": errors,
    }
    if parts:
        total = merged(model, "*", "*", parts)
        report.update(rows=total.rows, features=total.feature_report(), outputs=total.output_report())
    else:
        report.update(rows=0, features=_empty_features(reference), outputs={})
    report["series"] = [
        {
            "version": one.version,
            "arm": one.arm,
            "rows": one.rows,
            "features": one.feature_report(),
            "outputs": one.output_report(),
        }
        for one in sorted(parts, key=lambda one: (one.version, one.arm))
    ]
    return report


def _empty_features(reference: Any) -> list[dict[str, Any]]:
    """Before any sample: the reference's features, all ok on no evidence."""
    if reference is None:
        return []
    names = reference.names
    return [
        {
            **({"name": names[j]} if names else {}),
            "index": j,
            "samples": 0,
            "psi": 0.0,
            "ks": 0.0,
            "js": 0.0,
            "state": "ok",
            "enough_samples": False,
        }
        for j in range(reference.width)
    ]
