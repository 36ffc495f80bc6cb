"""Scenario `ratelimit`: authenticated traffic above its limit on the limited diabetes route.

The route allows each principal 5 requests/s with a burst of 5. Every user sends with the demo
API key (`--api-key`, default demo-key-1) at `--user-rate` requests per second (default 5), so 20
users offer 100/s, twenty times the limit. Expected 429s are marked successful in Locust's statistics
(they are the limiter working) and counted apart by the observer; a 429 without Retry-After, or any
other status than 200/429, is a failure. The summary shows how many got through per second, which
should sit near the limit (plus the burst spread over the run).
Options: --api-key, --user-rate.
"""

from __future__ import annotations

import random
from typing import Any, Final

from locust import constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

from loadtests.inference import DIABETES, dataset_rows, rest_body
from loadtests.locustfiles.common import JSON_HEADERS, mark, option, register_scenario, rest_answer_problem
from loadtests.observer import RETRY_AFTER_HEADER, TOO_MANY_REQUESTS, TrafficObserver

PATH: Final = "/limited/v2/models/diabetes/infer"
API_KEY_HEADER: Final = "x-api-key"
# The key demo.yaml gives the limited route's one principal.
DEFAULT_API_KEY: Final = "demo-key-1"
# Per user; with the default 20 users this offers twenty times the route's 5 requests/s.
DEFAULT_USER_RATE: Final = 5.0
# Read once per Locust process; immutable from then on.
DIABETES_ROWS: Final = tuple(tuple(row) for row in dataset_rows(DIABETES))


def _options(parser: Any) -> None:
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="API key sent in x-api-key")
    parser.add_argument(
        "--user-rate", type=float, default=DEFAULT_USER_RATE, help="requests per second per user"
    )


register_scenario(_options, lambda: TrafficObserver("ratelimit", unit_policy=None))


class RateLimitedUser(FastHttpUser):
    def on_start(self) -> None:
        self.headers = {**JSON_HEADERS, API_KEY_HEADER: str(option(self.environment, "api_key"))}
        self.pacing = constant_throughput(float(option(self.environment, "user_rate")))

    def wait_time(self) -> float:
        return self.pacing(self)

    @task
    def infer(self) -> None:
        body = rest_body([random.choice(DIABETES_ROWS)]).decode()
        with self.client.post(PATH, data=body, headers=self.headers, catch_response=True) as answer:
            if answer.status_code == TOO_MANY_REQUESTS:
                retry_after = (answer.headers or {}).get(RETRY_AFTER_HEADER)
                mark(answer, None if retry_after is not None else "429 without Retry-After")
            else:
                mark(answer, rest_answer_problem(answer, DIABETES, rows=1))
