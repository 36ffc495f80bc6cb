"""Experiments in the admin API: list, status with current numbers, and operator actions.

    GET  /admin/experiments                          every experiment, its kind and state
    GET  /admin/experiments/{name}                   status: arms, counts, metrics, tests, decision
    GET  /admin/experiments/{name}/report?format=    the analyst's report: json, md or html
    POST /admin/experiments/{name}/pause | resume | rollback
    POST /admin/experiments/{name}/promote           {"arm": "treatment"} for A/B; none for a canary
    POST /admin/experiments/{name}/weights           {"weights": {"control": 90, "treatment": 10}}
    POST /admin/experiments/{name}/coverage          {"percent": 25} (A/B coverage, canary percent)
    POST /admin/experiments/{name}/switch            blue-green: switch to the standby (smoke-checked)

Every change is stored (so it survives a restart and reaches other replicas) before it is answered.
Bodies are checked by `gateway.admin_inputs`: weights and percents are finite JSON numbers in range,
and a refused field is a JSON 400 that names it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from experiments.splits.ab import AbSplit
from experiments.splits.base import InvalidTransition
from experiments.splits.blue_green import BlueGreenSplit, SwitchRefused
from experiments.splits.canary import CanarySplit
from experiments.splits.shadow import ShadowSplit
from gateway.admin_inputs import Refused, arm_weights, json_object, number, required, text

if TYPE_CHECKING:
    from gateway.experiments_runtime import ExperimentsService
    from gateway.server import Gateway

GatewayOf = Callable[[web.Request], "Gateway"]
_REPORT_TYPES = {"json": "application/json", "md": "text/markdown", "html": "text/html"}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY),
        status=status,
        content_type="application/json",
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def add_experiment_routes(app: web.Application, gateway_of: GatewayOf) -> None:
    def service(request: web.Request) -> ExperimentsService:
        experiments = gateway_of(request).experiments
        if experiments is None:
            raise Refused(404, "no experiment is configured")
        return experiments

    def split_of(request: web.Request) -> tuple[ExperimentsService, str, Any]:
        experiments = service(request)
        name = request.match_info["name"]
        split = experiments.splits.get(name)
        if split is None:
            known = ", ".join(sorted(experiments.splits)) or "none"
            raise Refused(404, f"unknown experiment '{name}' (known: {known})")
        return experiments, name, split

    async def listing(request: web.Request) -> web.Response:
        experiments = service(request)
        return _json(
            {
                name: {
                    "kind": experiments.configs[name].kind,
                    "state": split.state_dict(),
                    "shares": split.shares(),
                }
                for name, split in experiments.splits.items()
            }
        )

    async def status(request: web.Request) -> web.Response:
        experiments, name, split = split_of(request)
        config = experiments.configs[name]
        body: dict[str, Any] = {"kind": config.kind, "state": split.state_dict(), "shares": split.shares()}
        if isinstance(split, AbSplit | CanarySplit):
            # Imported on the first status asked for: the analysis modules are no part of serving.
            from experiments.analysis import status_of

            cache = experiments.event_cache
            result = await status_of(name, config, split, experiments.store, now=time.time(), cache=cache)  # type: ignore[arg-type]
            body["status"] = orjson.loads(result.to_json())
        if name in experiments.mirrors:
            body["shadow"] = experiments.mirrors[name].comparison.snapshot()
        if name in experiments.controllers:
            body["decisions"] = [d.to_dict() for d in await experiments.store.decisions(name)]
        return _json(body)

    def action(
        apply: Callable[[Any, dict[str, Any]], Awaitable[None] | None],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            experiments, _, split = split_of(request)
            payload = json_object(await request.read())
            try:
                result = apply(split, payload)
                if result is not None:
                    await result
            except (SwitchRefused, InvalidTransition) as exc:  # not possible in the current state
                return _error(409, str(exc))
            except (ValueError, KeyError, TypeError) as exc:
                return _error(400, str(exc))
            if not await experiments.sync.publish(split):
                return _error(409, "another replica changed this experiment first; state reloaded, retry")
            return _json({"state": split.state_dict(), "shares": split.shares()})

        return handler

    def pause(split: Any, _: dict[str, Any]) -> None:
        split.pause()

    def resume(split: Any, _: dict[str, Any]) -> None:
        split.resume()

    def rollback(split: Any, _: dict[str, Any]) -> None:
        if not isinstance(split, AbSplit | CanarySplit):
            raise ValueError("only A/B tests and canaries roll back")
        split.rollback()

    def promote(split: Any, payload: dict[str, Any]) -> None:
        if isinstance(split, AbSplit):
            split.promote(text(required(payload, "arm"), "arm"))
        elif isinstance(split, CanarySplit):
            split.promote()
        else:
            raise ValueError("only A/B tests and canaries are promoted")

    def weights(split: Any, payload: dict[str, Any]) -> None:
        if not isinstance(split, AbSplit):
            raise ValueError("weights apply to A/B tests")
        split.set_weights(arm_weights(required(payload, "weights")))

    def coverage(split: Any, payload: dict[str, Any]) -> None:
        percent = number(required(payload, "percent"), "percent", 0.0, 100.0)
        if isinstance(split, AbSplit):
            split.set_coverage(percent)
        elif isinstance(split, CanarySplit):
            split.set_percent(percent)
        elif isinstance(split, ShadowSplit):
            split.set_fraction(text(required(payload, "mirror"), "mirror"), percent / 100)
        else:
            raise ValueError("coverage applies to A/B tests, canaries and shadows")

    async def switch(request: web.Request) -> web.Response:
        experiments, name, split = split_of(request)
        if not isinstance(split, BlueGreenSplit):
            return _error(400, "switch applies to blue-green experiments")
        try:
            state = await experiments.switch_blue_green(name)
        except (SwitchRefused, InvalidTransition) as exc:
            return _error(409, str(exc))
        return _json({"state": state, "shares": split.shares()})

    async def report(request: web.Request) -> web.Response:
        from experiments.report import build_report, render

        experiments, name, split = split_of(request)
        fmt = request.query.get("format", "json")
        if fmt not in _REPORT_TYPES:
            return _error(400, f"format must be one of {', '.join(_REPORT_TYPES)}")
        if not isinstance(split, AbSplit | CanarySplit):
            return _error(400, "reports cover A/B tests and canaries")
        config, cache = experiments.configs[name], experiments.event_cache
        built = await build_report(name, config, split, experiments.store, now=time.time(), cache=cache)
        return web.Response(text=str(render(built, fmt)), content_type=_REPORT_TYPES[fmt], charset="utf-8")

    app.router.add_get("/admin/experiments", listing)
    app.router.add_get("/admin/experiments/{name}/report", report)
    app.router.add_get("/admin/experiments/{name}", status)
    app.router.add_post("/admin/experiments/{name}/pause", action(pause))
    app.router.add_post("/admin/experiments/{name}/resume", action(resume))
    app.router.add_post("/admin/experiments/{name}/rollback", action(rollback))
    app.router.add_post("/admin/experiments/{name}/promote", action(promote))
    app.router.add_post("/admin/experiments/{name}/weights", action(weights))
    app.router.add_post("/admin/experiments/{name}/coverage", action(coverage))
    app.router.add_post("/admin/experiments/{name}/switch", switch)
