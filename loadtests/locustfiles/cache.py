"""Scenario `cache`: a few distinct bodies sent over and over to the cached diabetes route.

Each request carries one of `--distinct-bodies` (default 8) fixed dataset rows, so after the first
answer for each body nearly every request should be served from the gateway's cache
(x-turnout-cache: hit), and concurrent misses for one body merged (coalesced). The summary gives
the hit ratio over every lookup. Answers, cached or not, must meet the diabetes contract.
Options: --distinct-bodies, --max-wait-ms.
"""

from __future__ import annotations

import random
from typing import Any, Final

from locust import task
from locust.contrib.fasthttp import FastHttpUser

from loadtests.inference import DIABETES, dataset_rows, rest_body
from loadtests.locustfiles.common import JSON_HEADERS, mark, option, register_scenario, rest_answer_problem
from loadtests.observer import TrafficObserver

PATH: Final = "/v2/models/diabetes/infer"
# Few enough that a 20 s run is almost all hits; more than one so keys are really told apart.
DEFAULT_DISTINCT_BODIES: Final = 8
# Read once per Locust process; immutable from then on.
DIABETES_ROWS: Final = tuple(tuple(row) for row in dataset_rows(DIABETES))


def _options(parser: Any) -> None:
    parser.add_argument(
        "--distinct-bodies",
        type=int,
        default=DEFAULT_DISTINCT_BODIES,
        help=f"how many different request bodies to repeat (1..{len(DIABETES_ROWS)})",
    )


register_scenario(_options, lambda: TrafficObserver("cache", unit_policy=None))


class CacheUser(FastHttpUser):
    def on_start(self) -> None:
        self.max_wait_s = float(option(self.environment, "max_wait_ms")) / 1000.0
        distinct = max(1, min(int(option(self.environment, "distinct_bodies")), len(DIABETES_ROWS)))
        # The same rows in every user and every Locust process: the first `distinct` of the dataset.
        self.bodies = tuple(rest_body([row]).decode() for row in DIABETES_ROWS[:distinct])

    def wait_time(self) -> float:
        return random.random() * self.max_wait_s

    @task
    def infer(self) -> None:
        body = random.choice(self.bodies)
        with self.client.post(PATH, data=body, headers=JSON_HEADERS, catch_response=True) as answer:
            mark(answer, rest_answer_problem(answer, DIABETES, rows=1))
