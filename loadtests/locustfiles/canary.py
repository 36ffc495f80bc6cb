"""Scenario `canary`: traffic to the canary route while its controller ramps the candidate up.

Requests carry x-user-id from a pool (--user-pool), as the A/B scenario does. The observer records
the arm of every answer (x-turnout-arm: baseline or candidate) per second, and the summary prints
the candidate's share over time: with the demo's short steps it climbs 1 -> 5 -> 25 -> 50 -> 100 %.
A ramp only ever moves units towards the candidate, so a user id that saw the candidate and later
the baseline is a reversal; the summary counts them (0 unless the controller rolled back; this
assumes the canary assigns by x-user-id). Answers must meet the risk model's contract.
Options: --user-pool, --max-wait-ms.
"""

from __future__ import annotations

import random
from typing import Final

from locust import task
from locust.contrib.fasthttp import FastHttpUser

from loadtests.inference import RISK, dataset_rows, rest_body
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
from loadtests.observer import ARM_HEADER, UNIT_KEY, TrafficObserver

PATH: Final = "/canary/v2/models/risk/infer"
CANDIDATE_ARM: Final = "candidate"
# Read once per Locust process; immutable from then on.
RISK_ROWS: Final = tuple(tuple(row) for row in dataset_rows(RISK))

register_scenario(
    add_user_pool_option,
    lambda: TrafficObserver("canary", unit_policy="monotone", forward_arm=CANDIDATE_ARM),
)


class CanaryUser(FastHttpUser):
    def on_start(self) -> None:
        self.max_wait_s = float(option(self.environment, "max_wait_ms")) / 1000.0
        self.user_pool = int(option(self.environment, "user_pool"))

    def wait_time(self) -> float:
        return random.random() * self.max_wait_s

    @task
    def infer(self) -> None:
        unit = unit_id(self.user_pool)
        headers = {**JSON_HEADERS, UNIT_HEADER: unit}
        body = rest_body([random.choice(RISK_ROWS)]).decode()
        with self.client.post(
            PATH, data=body, headers=headers, context={UNIT_KEY: unit}, catch_response=True
        ) as answer:
            problem = rest_answer_problem(answer, RISK, rows=1)
            if problem is None and ARM_HEADER not in (answer.headers or {}):
                problem = f"no {ARM_HEADER} header: is {PATH} the canary route?"
            mark(answer, problem)
