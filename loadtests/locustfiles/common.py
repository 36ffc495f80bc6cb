"""What every locustfile shares: its options, the traffic observer's wiring, unit ids, answer checks.

A locustfile calls `register_scenario` once, at import (Locust's own idiom): its options join
Locust's command line, and at `init` a fresh observer hears every request event of that Locust
environment and writes its report at `test_stop` to `--turnout-stats` (the runner reads it back).
Without that option the report goes to the log instead.

Locust refreshes its `--csv` statistics once a second and does not rewrite them at exit, so they
miss the run's last second; at `test_stop` (every user stopped, every request counted) a final copy
is written with Locust's own CSV writer as `<csv prefix>_final_stats.csv`, which the runner reads.

Locust times `--run-time` with `gevent.spawn_later`, which counts from the event loop's cached
clock; that clock last moved before Locust imported the locustfile and its datasets, so the run
ended early by however long those imports took (a 10 s run stopped after 6 to 9 s). `on_init`
brings the clock up to date just before Locust arms that timer.

Locust's event hooks and response markers are untyped; they are reached through `Any` here, at
this one boundary, so that the locustfiles themselves type-check strictly.
"""

from __future__ import annotations

import csv
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

import gevent  # type: ignore[import-untyped]
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from loadtests.inference import ModelSpec, contract_problem, rest_outputs
from loadtests.locust_csv import FINAL_STATS_SUFFIX
from loadtests.observer import TrafficObserver

JSON_HEADERS: Final = {"content-type": "application/json"}
UNIT_HEADER: Final = "x-user-id"
# Users wait a uniform 0..50 ms between tasks by default: enough spread to avoid lock-step
# requests, short enough that a handful of users keeps two small workers busy.
DEFAULT_MAX_WAIT_MS: Final = 50.0
# A pool the A/B scenario revisits several times in a 20 s run at a few hundred requests per second,
# so that most user ids are seen more than once and stickiness is really put to the test.
DEFAULT_USER_POOL: Final = 2000

_log = logging.getLogger("turnout.loadtests")


def add_common_options(parser: Any) -> None:
    """Options every scenario takes (`parser` is Locust's configargparse parser)."""
    parser.add_argument(
        "--turnout-stats", default="", help="write the scenario's traffic report (JSON) here at test stop"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULT_MAX_WAIT_MS,
        help="each user waits a uniform 0..this many ms between tasks (0: back to back)",
    )


def add_user_pool_option(parser: Any) -> None:
    parser.add_argument(
        "--user-pool",
        type=int,
        default=DEFAULT_USER_POOL,
        help="distinct user ids (x-user-id) the users draw from",
    )


def option(environment: Environment, name: str) -> Any:
    """A parsed command-line option; Locust always parses them before users start."""
    if environment.parsed_options is None:
        raise RuntimeError(f"option {name!r} read before Locust parsed the command line")
    return getattr(environment.parsed_options, name)


class MarkableResponse(Protocol):
    """What a `catch_response=True` request yields (Locust's ResponseContextManager)."""

    @property
    def status_code(self) -> int: ...
    @property
    def content(self) -> bytes | None: ...
    @property
    def text(self) -> str | None: ...


def register_scenario(
    add_options: Callable[[Any], None], make_observer: Callable[[], TrafficObserver]
) -> None:
    """Hook a scenario's options and its observer into Locust."""
    hooks: Any = events

    def on_parser(parser: Any, **_: Any) -> None:
        add_common_options(parser)
        add_options(parser)

    def on_init(environment: Environment, **_: Any) -> None:
        observe(environment, make_observer())
        refresh_loop_clock()

    hooks.init_command_line_parser.add_listener(on_parser)
    hooks.init.add_listener(on_init)


def refresh_loop_clock() -> None:
    """Bring the event loop's cached clock up to date, so that timers armed next count from now."""
    hub: Any = gevent.get_hub()
    hub.loop.update_now()


def observe(environment: Environment, observer: TrafficObserver) -> None:
    """Feed every request event to `observer` and write its report when the test stops."""
    if isinstance(environment.runner, MasterRunner):
        return  # a master sees no request events of its own; its workers observe and report

    def report(**_: Any) -> None:
        csv_prefix = getattr(environment.parsed_options, "csv_prefix", None)
        if csv_prefix:
            write_final_stats(environment, Path(f"{csv_prefix}{FINAL_STATS_SUFFIX}"))
        traffic = observer.report()
        path = option(environment, "turnout_stats")
        if path:
            traffic.write(Path(path))
        else:
            _log.info("traffic report: %s", traffic.to_json().decode())

    hooks: Any = environment.events
    hooks.request.add_listener(observer.on_request)
    hooks.test_stop.add_listener(report)


def write_final_stats(environment: Environment, path: Path) -> None:
    """Locust's request statistics as they stand now, in the layout of its `_stats.csv`."""
    with path.open("w", newline="") as out:
        StatsCSV(environment, PERCENTILES_TO_REPORT).requests_csv(csv.writer(out))


def unit_id(pool: int) -> str:
    """A user id drawn uniformly from `pool` ids."""
    return f"user-{random.randrange(pool):06d}"


def mark(response: MarkableResponse, problem: str | None) -> None:
    """Record the request as failed with `problem`, or as a success when it is None."""
    marker: Any = response
    if problem is None:
        marker.success()
    else:
        marker.failure(problem)


def status_problem(response: MarkableResponse, expected: int = 200) -> str | None:
    if response.status_code == expected:
        return None
    return f"status {response.status_code}: {(response.text or '')[:200]}"


def rest_answer_problem(response: MarkableResponse, model: ModelSpec, rows: int) -> str | None:
    """Why the answer is not a 200 whose body meets the model's contract; None when it is."""
    problem = status_problem(response)
    if problem is not None:
        return problem
    try:
        return contract_problem(model, rest_outputs(response.content or b""), rows)
    except ValueError as exc:
        return str(exc)
