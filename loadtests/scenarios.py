"""The scenarios the runner knows: each is one locustfile under `locustfiles/`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

LOCUSTFILES = Path(__file__).resolve().parent / "locustfiles"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    module: str
    """The locustfile's file name without .py (not the scenario name where that would shadow a
    package: Locust imports a locustfile under its file name, and `grpc.py` would hide grpcio)."""
    purpose: str

    @property
    def locustfile(self) -> Path:
        return LOCUSTFILES / f"{self.module}.py"


SCENARIOS = MappingProxyType(
    {
        scenario.name: scenario
        for scenario in (
            Scenario("oip", "oip", "OIP v2 REST inference through the gateway, real dataset rows"),
            Scenario("grpc", "grpc_infer", "gRPC ModelInfer straight to a worker's gRPC port"),
            Scenario("ab", "ab", "the risk A/B test: thousands of user ids, sticky arms, arm split"),
            Scenario("ratelimit", "ratelimit", "authenticated traffic above its limit: 429s counted apart"),
            Scenario("canary", "canary", "the canary route: candidate share over time, ramp reversals"),
            Scenario("batching", "batching", "bursts of concurrent requests into the batcher"),
            Scenario("cache", "cache", "a few repeated bodies to the cached route: hit ratio"),
        )
    }
)
