"""Scenario `batching`: users that fire bursts of concurrent requests, so the batcher has work to merge.

Each user sends `--burst-size` requests at once (default 16, one greenlet each), waits for all of
them, then pauses about `--burst-interval-ms` (default 200, jittered +-50 %) before the next burst.
Requests go to `--batch-path` (default the risk A/B route, which batches with at most 32 rows and
5 ms of queue delay) with 1..`--max-rows` rows each (default 3), so the batcher must split merged
answers back by each request's own row count; every answer is checked against the risk contract,
which catches a slice handed to the wrong request. The summary adds how long whole bursts took and,
from the gateway's metrics, the requests and rows per upstream batch. An x-user-id from
`--user-pool` makes stickiness measurable on the A/B route.
"""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any, Final

import gevent.pool  # type: ignore[import-untyped]
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
from loadtests.observer import BURST_KEY, BURST_SIZE_KEY, UNIT_KEY, TrafficObserver

# Twice the route's max batch of 32: enough to fill a batch from one user, few enough for one pool.
MAX_BURST_SIZE: Final = 64
# Half a batch from one user; a few users together fill the route's 32-row batches.
DEFAULT_BURST_SIZE: Final = 16
# Bursts from many users overlap at this spacing, and a 2-core machine is not saturated by default.
DEFAULT_BURST_INTERVAL_MS: Final = 200.0
# Varied row counts make the batcher split answers unevenly; 3 keeps requests small.
DEFAULT_MAX_ROWS: Final = 3
DEFAULT_PATH: Final = "/v2/models/risk/infer"
# Read once per Locust process; immutable from then on.
RISK_ROWS: Final = tuple(tuple(row) for row in dataset_rows(RISK))


def _options(parser: Any) -> None:
    add_user_pool_option(parser)
    parser.add_argument(
        "--burst-size", type=int, default=DEFAULT_BURST_SIZE, help=f"requests per burst (1..{MAX_BURST_SIZE})"
    )
    parser.add_argument("--burst-interval-ms", type=float, default=DEFAULT_BURST_INTERVAL_MS)
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, help="rows per request: 1..this")
    parser.add_argument("--batch-path", default=DEFAULT_PATH, help="a risk inference path of the gateway")


register_scenario(_options, lambda: TrafficObserver("batching", unit_policy="sticky"))


class BurstUser(FastHttpUser):
    # Connections per user: a whole burst is in flight at once.
    concurrency = MAX_BURST_SIZE

    def on_start(self) -> None:
        self.burst_size = int(option(self.environment, "burst_size"))
        if not 1 <= self.burst_size <= MAX_BURST_SIZE:
            raise ValueError(f"--burst-size must be 1..{MAX_BURST_SIZE}")
        self.interval_s = float(option(self.environment, "burst_interval_ms")) / 1000.0
        self.max_rows = max(1, int(option(self.environment, "max_rows")))
        self.user_pool = int(option(self.environment, "user_pool"))
        self.path = str(option(self.environment, "batch_path"))
        if not self.path.startswith("/"):
            raise ValueError("--batch-path must be a path on the gateway, starting with /")
        self.burst_ids = (f"{uuid.uuid4().hex[:8]}-{n}" for n in itertools.count())

    def wait_time(self) -> float:
        return self.interval_s * random.uniform(0.5, 1.5)

    @task
    def burst(self) -> None:
        burst_id = next(self.burst_ids)
        group = gevent.pool.Group()
        try:
            for _ in range(self.burst_size):
                group.spawn(self._one, burst_id)
            group.join()
        finally:
            group.kill()  # the user is being stopped mid-burst: take its requests with it

    def _one(self, burst_id: str) -> None:
        unit = unit_id(self.user_pool)
        rows = random.randint(1, self.max_rows)
        body = rest_body(random.sample(RISK_ROWS, rows)).decode()
        context = {UNIT_KEY: unit, BURST_KEY: burst_id, BURST_SIZE_KEY: self.burst_size}
        headers = {**JSON_HEADERS, UNIT_HEADER: unit}
        with self.client.post(
            self.path, data=body, headers=headers, context=context, catch_response=True
        ) as answer:
            mark(answer, rest_answer_problem(answer, RISK, rows=rows))
