"""The readiness check before a blue-green switch: healthy endpoints, then a smoke request.

The gateway supplies `healthy(cluster)` (whether the cluster has healthy endpoints) and `send` (how to
forward a request to a cluster); this module decides what a passing answer is: the expected status
and, when configured, a JSON body containing the expected subset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from experiments.config import SmokeConfig
from experiments.outbound import OutboundRequest, Send
from experiments.splits.blue_green import CheckResult

Healthy = Callable[[str], Awaitable[bool]]

# How much of an unexpected answer a refusal quotes: enough to recognise the error, short enough
# for a log line and an admin API reply.
_QUOTE_BYTES = 200


def json_contains(actual: Any, expected: Any) -> bool:
    """Whether `actual` contains `expected`: objects match as subsets (recursively), lists and
    scalars must be equal, and numbers compare by value (1 == 1.0)."""
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and json_contains(actual[key], value) for key, value in expected.items()
        )
    return bool(actual == expected)


def smoke_request(config: SmokeConfig) -> OutboundRequest:
    headers = dict(config.headers)
    body = b""
    if config.body is not None:
        body = orjson.dumps(config.body)
        headers.setdefault("content-type", "application/json")
    return OutboundRequest(config.method.upper(), config.path, "", tuple(headers.items()), body)


class SmokeCheck:
    """A `StandbyCheck` for `BlueGreenSplit.switch`."""

    def __init__(self, send: Send, healthy: Healthy, smoke: SmokeConfig | None) -> None:
        self._send = send
        self._healthy = healthy
        self._smoke = smoke
        self._request = smoke_request(smoke) if smoke is not None else None

    async def __call__(self, color: str, cluster: str) -> CheckResult:
        if not await self._healthy(cluster):
            return CheckResult(False, f"{color} ({cluster}) has no healthy endpoint")
        smoke, request = self._smoke, self._request
        if smoke is None or request is None:
            return CheckResult(True, f"{color} ({cluster}) is healthy")
        try:
            status, body, _ = await asyncio.wait_for(self._send(cluster, request), smoke.timeout)
        except TimeoutError:
            return CheckResult(False, f"smoke request to {cluster} timed out after {smoke.timeout:g}s")
        except Exception as error:  # any transport failure refuses the switch, with its reason
            return CheckResult(False, f"smoke request to {cluster} failed: {error!r}")
        return _judge(smoke, cluster, status, body)


def _judge(smoke: SmokeConfig, cluster: str, status: int, body: bytes) -> CheckResult:
    quoted = body[:_QUOTE_BYTES].decode(errors="replace")
    if status != smoke.expect_status:
        return CheckResult(False, f"smoke answer {status} from {cluster}, expected {smoke.expect_status}")
    if smoke.expect_json is not None:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return CheckResult(False, f"smoke answer from {cluster} is not JSON: {quoted!r}")
        if not json_contains(document, smoke.expect_json):
            return CheckResult(False, f"smoke answer from {cluster} lacks the expected fields: {quoted!r}")
    return CheckResult(True, f"{cluster} is healthy and answered the smoke request as expected")
