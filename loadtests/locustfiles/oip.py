"""Scenario `oip`: OIP v2 REST inference through the gateway, one random dataset row per request.

Mixes the demo's inference routes: the risk A/B route (with an x-user-id, so stickiness is checked
too), each risk version directly, and diabetes. Every answer is checked against the model's
contract (output names, datatypes, shapes, probabilities summing to 1); one that is not counts as a
failure. Options: --max-wait-ms, --user-pool.
"""

from __future__ import annotations

import random
from typing import Final

from locust import task
from locust.contrib.fasthttp import FastHttpUser

from loadtests.inference import DIABETES, RISK, ModelSpec, dataset_rows, rest_body
from loadtests.locustfiles.common import (
    JSON_HEADERS,
    UNIT_HEADER,
    add_user_pool_option,
    mark,
    option,
    register_scenario,
    rest_answer_problem,
    unit_id,
)
from loadtests.observer import UNIT_KEY, TrafficObserver

# Read once per Locust process; immutable from then on.
RISK_ROWS: Final = tuple(tuple(row) for row in dataset_rows(RISK))
DIABETES_ROWS: Final = tuple(tuple(row) for row in dataset_rows(DIABETES))

register_scenario(add_user_pool_option, lambda: TrafficObserver("oip", unit_policy="sticky"))


class OipUser(FastHttpUser):
    def on_start(self) -> None:
        self.max_wait_s = float(option(self.environment, "max_wait_ms")) / 1000.0
        self.user_pool = int(option(self.environment, "user_pool"))

    def wait_time(self) -> float:
        return random.random() * self.max_wait_s

    def _infer(
        self, path: str, model: ModelSpec, rows: tuple[tuple[float, ...], ...], unit: str | None
    ) -> None:
        headers = dict(JSON_HEADERS)
        context = {}
        if unit is not None:
            headers[UNIT_HEADER] = unit
            context[UNIT_KEY] = unit
        body = rest_body([random.choice(rows)]).decode()
        with self.client.post(
            path, data=body, headers=headers, context=context, catch_response=True
        ) as answer:
            mark(answer, rest_answer_problem(answer, model, rows=1))

    @task(2)
    def risk_experiment(self) -> None:
        self._infer("/v2/models/risk/infer", RISK, RISK_ROWS, unit_id(self.user_pool))

    @task(1)
    def risk_v1(self) -> None:
        self._infer("/v2/models/risk/versions/1/infer", RISK, RISK_ROWS, None)

    @task(1)
    def risk_v2(self) -> None:
        self._infer("/v2/models/risk/versions/2/infer", RISK, RISK_ROWS, None)

    @task(2)
    def diabetes(self) -> None:
        self._infer("/v2/models/diabetes/infer", DIABETES, DIABETES_ROWS, None)
