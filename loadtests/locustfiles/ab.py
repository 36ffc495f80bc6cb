"""Scenario `ab`: the risk A/B test (`risk-ab`) as thousands of distinct users see it.

Every request carries an x-user-id drawn from a pool (--user-pool, default 2000); the observer
records, for every user id, the arms it was shown (x-turnout-arm). A user id seen in two arms is a
sticky violation and fails the run; the summary also gives the arm split by answers and by users.
An answer without x-turnout-arm or x-turnout-experiment counts as a failure: the route is not
running the experiment. Bodies are real rows but answers are not checked beyond their status (the
`oip` scenario does that), so this scenario also runs against a stand-in upstream.
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
    status_problem,
    unit_id,
)
from loadtests.observer import ARM_HEADER, UNIT_KEY, TrafficObserver

EXPERIMENT_HEADER: Final = "x-turnout-experiment"
PATH: Final = "/v2/models/risk/infer"
# Read once per Locust process; immutable from then on.
RISK_ROWS: Final = tuple(tuple(row) for row in dataset_rows(RISK))

register_scenario(add_user_pool_option, lambda: TrafficObserver("ab", unit_policy="sticky"))


class AbUser(FastHttpUser):
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
            problem = status_problem(answer)
            if problem is None:
                headers_seen = answer.headers or {}
                missing = [name for name in (ARM_HEADER, EXPERIMENT_HEADER) if name not in headers_seen]
                problem = f"no {' or '.join(missing)} header: is {PATH} the A/B route?" if missing else None
            mark(answer, problem)
