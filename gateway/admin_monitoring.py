"""Baselines from live traffic in the admin API: what `turnout monitor baseline MODEL --from 2h` calls.

    GET  /admin/monitoring/{model}/rows?from=2h    a sample of the model's input rows of the last 2h
    POST /admin/monitoring/{model}/baseline        {"from": "2h"}: those rows become the model's
                                                   reference in this gateway, now

The rows come from each monitor filter's `RowHistory` (a bounded sample per five-minute bucket), so
a window longer than the filter's `history` holds only what was kept. The reference the POST makes
lives until the next reload or restart; to keep it, write the rows to a file (the CLI's `--out`) and
name that file as the model's `reference:` in the config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from aiohttp import web

from gateway.admin_inputs import InputError, Refused, json_object
from gateway.core.config_types import parse_duration
from plugins.monitor import MonitorFilter
from plugins.monitor.reference import ReferenceError

if TYPE_CHECKING:
    from gateway.server import Gateway

# Rows one GET may return: two hours at 500 rows per five-minute bucket is 12,000; a day is 144,000
# rows, tens of MB of JSON for 30 features, more than an admin answer should hold.
MAX_ROWS = 50_000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _seconds(value: Any) -> float:
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise InputError("from", str(exc)) from None
    if seconds <= 0:
        raise InputError("from", "from must be a positive duration, like 2h")
    return seconds


def add_monitoring_routes(app: web.Application, gateway_of: Callable[[web.Request], Gateway]) -> None:
    def monitors(request: web.Request, model: str) -> list[MonitorFilter]:
        found = {
            id(filter_): filter_
            for route in gateway_of(request).runtime.routes
            for filter_ in route.filters.filters
            if isinstance(filter_, MonitorFilter) and model in filter_.config.models
        }
        if not found:
            raise Refused(404, f"no route monitors model '{model}'")
        return list(found.values())

    async def rows(request: web.Request) -> web.Response:
        model = request.match_info["model"]
        seconds = _seconds(request.query.get("from", ""))
        parts = [filter_.recent_rows(model, seconds) for filter_ in monitors(request, model)]
        kept = [part for part in parts if len(part[0])]
        if len({part[0].shape[1] for part in kept}) > 1:
            raise Refused(409, f"routes monitoring '{model}' saw rows of different widths")
        matrix = np.vstack([part[0] for part in kept]) if kept else np.empty((0, 0))
        if len(matrix) > MAX_ROWS:
            matrix = matrix[np.random.default_rng().choice(len(matrix), MAX_ROWS, replace=False)]
        names = next((part[1] for part in kept if part[1] is not None), None)
        return _json(
            {
                "model": model,
                "from_s": seconds,
                "seen": sum(part[2] for part in parts),
                "names": list(names) if names is not None else None,
                "rows": matrix.tolist(),
            }
        )

    async def baseline(request: web.Request) -> web.Response:
        model = request.match_info["model"]
        payload = json_object(await request.read())
        seconds = _seconds(payload.get("from", ""))
        applied = []
        for filter_ in monitors(request, model):
            try:
                reference = filter_.use_baseline(model, seconds)
            except ReferenceError as exc:
                raise Refused(409, str(exc)) from None
            applied.append({"source": reference.source, "rows": reference.rows, "features": reference.width})
        return _json({"model": model, "from_s": seconds, "references": applied})

    app.router.add_get("/admin/monitoring/{model}/rows", rows)
    app.router.add_post("/admin/monitoring/{model}/baseline", baseline)
