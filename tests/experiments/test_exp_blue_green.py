"""Blue-green switch: refused unless the standby is healthy and answers its smoke request correctly.

The standby is a real aiohttp server on loopback; `send` forwards to it the way the gateway would.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from experiments.config import BlueGreenConfig, SmokeConfig
from experiments.outbound import OutboundRequest
from experiments.smoke import SmokeCheck, json_contains
from experiments.splits import BlueGreenSplit, InvalidTransition, SwitchRefused
from experiments.splits.blue_green import CheckResult
from gateway.core.context import RequestContext

Context = Callable[..., RequestContext]


@dataclass
class Standby:
    """A loopback model server whose answer the test controls."""

    url: str
    status: int = 200
    payload: dict[str, Any] = field(default_factory=lambda: {"model_name": "risk", "outputs": []})
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)


@pytest.fixture
async def standby() -> AsyncIterator[Standby]:
    state = Standby(url="")

    async def infer(request: web.Request) -> web.Response:
        state.seen.append((request.method, request.path, await request.read()))
        return web.json_response(state.payload, status=state.status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", infer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def send(standby: Standby) -> AsyncIterator[Any]:
    async with aiohttp.ClientSession() as session:

        async def forward(cluster: str, request: OutboundRequest) -> tuple[int, bytes, float]:
            if cluster != "risk-v2":
                raise ConnectionRefusedError(f"no route to {cluster}")
            started = time.monotonic()
            async with session.request(
                request.method, standby.url + request.path, data=request.body, headers=dict(request.headers)
            ) as response:
                return response.status, await response.read(), time.monotonic() - started

        yield forward


def config(**smoke: Any) -> BlueGreenConfig:
    return BlueGreenConfig.model_validate(
        {
            "kind": "blue_green",
            "active": "blue",
            "colors": {"blue": {"cluster": "risk-v1"}, "green": {"cluster": "risk-v2"}},
            "smoke": {
                "method": "POST",
                "path": "/v2/models/risk/infer",
                "body": {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
                "expect_status": 200,
                "expect_json": {"model_name": "risk"},
                **smoke,
            },
        }
    )


async def healthy(cluster: str) -> bool:
    return True


async def test_switch_accepted_when_the_smoke_request_passes(
    context: Context, standby: Standby, send: Any
) -> None:
    cfg = config()
    split = BlueGreenSplit("risk-bg", cfg)
    assert split.choose(context()).cluster == "risk-v1"
    state = await split.switch(SmokeCheck(send, healthy, cfg.smoke))
    assert state.active == "green" and state.phase == 1
    assignment = split.choose(context())
    assert assignment.cluster == "risk-v2" and assignment.arm == "green" and assignment.excluded
    method, path, body = standby.seen[-1]
    assert (method, path) == ("POST", "/v2/models/risk/infer") and b'"inputs"' in body


async def test_switch_refused_when_the_smoke_status_is_wrong(standby: Standby, send: Any) -> None:
    cfg = config()
    split = BlueGreenSplit("risk-bg", cfg)
    standby.status = 503
    with pytest.raises(SwitchRefused, match="503"):
        await split.switch(SmokeCheck(send, healthy, cfg.smoke))
    assert split.state.active == "blue" and split.state.revision == 0


async def test_switch_refused_when_the_answer_lacks_expected_json(standby: Standby, send: Any) -> None:
    cfg = config()
    split = BlueGreenSplit("risk-bg", cfg)
    standby.payload = {"model_name": "fraud"}
    with pytest.raises(SwitchRefused, match="lacks the expected fields"):
        await split.switch(SmokeCheck(send, healthy, cfg.smoke))
    assert split.state.active == "blue"


async def test_switch_refused_when_the_standby_is_unhealthy(send: Any) -> None:
    cfg = config()
    split = BlueGreenSplit("risk-bg", cfg)

    async def no_endpoints(cluster: str) -> bool:
        return False

    with pytest.raises(SwitchRefused, match="no healthy endpoint"):
        await split.switch(SmokeCheck(send, no_endpoints, cfg.smoke))


async def test_switch_refused_when_the_smoke_request_cannot_be_sent(send: Any) -> None:
    cfg = BlueGreenConfig.model_validate(
        {
            "kind": "blue_green",
            "active": "blue",
            "colors": {"blue": {"cluster": "risk-v1"}, "green": {"cluster": "unreachable"}},
            "smoke": {"path": "/v2/health/ready"},
        }
    )
    split = BlueGreenSplit("bg", cfg)
    with pytest.raises(SwitchRefused, match="failed"):
        await split.switch(SmokeCheck(send, healthy, cfg.smoke))


async def test_switch_dropped_when_the_state_moved_during_the_check() -> None:
    cfg = config()
    split = BlueGreenSplit("bg", cfg)
    other = BlueGreenSplit("bg", cfg)

    async def slow_check(color: str, cluster: str) -> CheckResult:
        other_state = await other.switch(lambda c, k: _passing())
        split.apply(other_state)
        return CheckResult(True, "ok")

    with pytest.raises(InvalidTransition):
        await split.switch(slow_check)
    assert split.state.active == "green" and split.state.revision == 1


async def _passing() -> CheckResult:
    return CheckResult(True, "ok")


def test_json_subset_matching() -> None:
    assert json_contains({"a": 1, "b": {"c": [1, 2], "d": 0}}, {"b": {"c": [1, 2]}})
    assert json_contains({"a": 1.0}, {"a": 1})
    assert not json_contains({"a": {"c": [1]}}, {"a": {"c": [1, 2]}})
    assert not json_contains([1], {"a": 1})


def test_smoke_config_defaults() -> None:
    smoke = SmokeConfig.model_validate({"path": "/v2/health/ready"})
    assert smoke.method == "GET" and smoke.expect_status == 200 and smoke.timeout == 5.0
