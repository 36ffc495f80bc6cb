"""State across gateway processes and replicas: real supervisors, gateways and one private Redis.

- a rate limit on the Redis backend holds between two processes of one supervisor and a separate
  gateway, to within 2%;
- assignment is a pure hash: every process and replica gives a user the same arm;
- the processes of one host write their experiment events into one SQLite store (WAL) with no loss
  and no duplicates;
- the canary controller runs in one process at a time (a lock file beside the SQLite store; a Redis
  lease across replicas), and another takes over when the holder is killed.
"""

from __future__ import annotations

import http.client
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.conftest import gateway_config
from tests.support.processes import GatewayProcess, Process, start_gateway, wait_until
from tests.support.redis_server import private_redis_server

LIMIT_PER_S = 100
# Long enough that the burst (one second's worth) is a third of what is admitted, short for CI.
LOAD_S = 2.0
# Client threads per gateway: enough to keep the limit saturated on a 2-core machine.
THREADS = 3
# The canary controller's tick; the Redis lease lasts three ticks (experiments.controller).
TICK_S = 1.0
LEASE_S = 3 * TICK_S
# Room for a loaded 2-core machine on top of the lease time.
SLACK_S = 2.0


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with private_redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def _start(tmp: Path, config: dict[str, Any], processes: int) -> GatewayProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ("--processes", str(processes), "--no-watch")
    return start_gateway(path, config["listen"]["port"], config["admin"]["port"], tmp, args)


def _get(port: int, path: str = "/echo", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """One request on a new connection, so the kernel picks the process that serves it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def _ab(upstream_a: Process, upstream_b: Process, store: Path) -> dict[str, Any]:
    config = gateway_config(
        [], routes=[{"name": "ab", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}}]
    )
    config["clusters"] = {
        "a": {"endpoints": [f"127.0.0.1:{upstream_a.port}"]},
        "b": {"endpoints": [f"127.0.0.1:{upstream_b.port}"]},
    }
    config["state"] = {"sqlite_path": str(store)}
    config["experiments"] = {
        "exp": {
            "kind": "ab",
            "unit": "header:x-user-id",
            "arms": {"control": {"cluster": "a", "weight": 50}, "treatment": {"cluster": "b", "weight": 50}},
        }
    }
    return config


def test_a_redis_rate_limit_holds_across_processes_and_replicas(
    upstream_a: Process, redis_url: str, tmp_path: Path
) -> None:
    def config() -> dict[str, Any]:
        return gateway_config(
            [f"127.0.0.1:{upstream_a.port}"],
            routes=[
                {
                    "name": "limited",
                    "match": {"prefix": "/"},
                    "backend": {"cluster": "up"},
                    "filters": [
                        {
                            "rate_limit": {
                                "limits": [{"key": "route", "rate": f"{LIMIT_PER_S}/s"}],
                                "backend": "redis",
                                # Exactness is under test, not the decision budget of a busy CI box.
                                "redis_timeout": "2s",
                                "on_redis_failure": "fail_closed",
                            }
                        }
                    ],
                }
            ],
            state={"backend": "redis", "url": redis_url},
        )

    supervised = _start(tmp_path / "supervised", config(), processes=2)
    replica = _start(tmp_path / "replica", config(), processes=1)
    statuses: dict[int, Counter[int]] = {supervised.port: Counter(), replica.port: Counter()}
    lock = threading.Lock()
    try:
        # The limiter's bucket starts full again once it has been idle for a second.
        time.sleep(1.0)
        started = time.monotonic()
        stop_at = started + LOAD_S

        def load(port: int) -> None:
            while time.monotonic() < stop_at:
                status, _ = _get(port, "/count")
                with lock:
                    statuses[port][status] += 1

        threads = [threading.Thread(target=load, args=(port,)) for port in statuses for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        supervised.stop()
        replica.stop()
    admitted = sum(counts[200] for counts in statuses.values())
    assert all(set(counts) <= {200, 429} for counts in statuses.values()), statuses
    assert all(counts[429] > 0 and counts[200] > 0 for counts in statuses.values()), statuses
    # The burst (one second's worth, the default) and then the rate, over the time under load.
    expected = LIMIT_PER_S + LIMIT_PER_S * elapsed
    assert abs(admitted - expected) <= 0.02 * expected, (admitted, expected, statuses)


def test_every_process_and_replica_gives_a_user_the_same_arm(
    upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    supervised = _start(tmp_path / "s", _ab(upstream_a, upstream_b, tmp_path / "s.db"), processes=2)
    replica = _start(tmp_path / "r", _ab(upstream_a, upstream_b, tmp_path / "r.db"), processes=1)
    try:
        split: Counter[str] = Counter()
        for user in range(60):
            headers = {"x-user-id": f"u{user}"}
            arms = {_get(port, headers=headers)[1]["x-turnout-arm"] for port in (supervised.port,) * 3}
            arms.add(_get(replica.port, headers=headers)[1]["x-turnout-arm"])
            assert len(arms) == 1, (user, arms)
            split[arms.pop()] += 1
        assert set(split) == {"control", "treatment"}
    finally:
        supervised.stop()
        replica.stop()


def test_events_of_every_process_land_once_in_one_sqlite_store(
    upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    store = tmp_path / "events.db"
    gateway = _start(tmp_path / "g", _ab(upstream_a, upstream_b, store), processes=2)
    sent = 300
    try:
        for user in range(sent):
            assert _get(gateway.port, headers={"x-user-id": f"u{user}", "x-request-id": f"r{user}"})[0] == 200
    finally:
        assert gateway.stop() == 0  # each process flushes its events as it drains
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT request_id FROM exposures WHERE experiment = 'exp'").fetchall()
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert len(rows) == sent
    assert len({row[0] for row in rows}) == sent


def _canary(baseline: Process, candidate: Process, state: dict[str, Any]) -> dict[str, Any]:
    config = gateway_config(
        [], routes=[{"name": "canary", "match": {"prefix": "/"}, "backend": {"experiment": "rollout"}}]
    )
    config["clusters"] = {
        "stable": {"endpoints": [f"127.0.0.1:{baseline.port}"]},
        "next": {"endpoints": [f"127.0.0.1:{candidate.port}"]},
    }
    config["state"] = state
    config["experiments"] = {
        "rollout": {
            "kind": "canary",
            "unit": "header:x-user-id",
            "baseline": {"cluster": "stable"},
            "candidate": {"cluster": "next"},
            "steps": [{"percent": 10, "min_duration": "1h", "min_units": 100}, {"percent": 100}],
            "interval": f"{TICK_S}s",
        }
    }
    return config


def _lock_holder(lease_file: Path) -> int | None:
    try:
        return int(lease_file.read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def test_one_process_of_a_host_runs_the_canary_and_another_takes_over(
    upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    store = tmp_path / "events.db"
    gateway = _start(tmp_path / "g", _canary(upstream_a, upstream_b, {"sqlite_path": str(store)}), 2)
    lease_file = Path(f"{store}.lease-rollout")
    try:
        pids = [entry["pid"] for entry in _processes(gateway)]
        wait_until(lambda: _lock_holder(lease_file) in pids, LEASE_S + SLACK_S, message="a leader")
        leader = _lock_holder(lease_file)
        assert leader is not None
        (follower,) = set(pids) - {leader}
        time.sleep(2 * TICK_S)
        assert _lock_holder(lease_file) == leader  # the other process never took it meanwhile
        killed_at = time.monotonic()
        os.kill(leader, signal.SIGKILL)
        wait_until(lambda: _lock_holder(lease_file) == follower, TICK_S + SLACK_S, message="a new leader")
        assert time.monotonic() - killed_at < LEASE_S
    finally:
        gateway.stop()


def _processes(gateway: GatewayProcess) -> list[dict[str, Any]]:
    import urllib.request

    import orjson

    with urllib.request.urlopen(f"{gateway.admin_url}/admin/processes", timeout=5) as response:
        result: list[dict[str, Any]] = orjson.loads(response.read())
    return result


def test_a_new_replica_leads_the_canary_within_the_lease_when_the_leader_is_killed(
    upstream_a: Process, upstream_b: Process, redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    state = {"backend": "redis", "url": redis_url}

    def holder() -> str | None:
        keys = client.keys("*lease:rollout")
        value = client.get(keys[0]) if keys else None
        return str(value) if value is not None else None

    first = _start(tmp_path / "first", _canary(upstream_a, upstream_b, state), processes=1)
    second = None
    try:
        wait_until(lambda: holder() is not None, LEASE_S + SLACK_S, message="a leader")
        leader = holder()
        second = _start(tmp_path / "second", _canary(upstream_a, upstream_b, state), processes=1)
        time.sleep(2 * TICK_S)
        assert holder() == leader  # the lease is renewed by its holder, never taken while held
        killed_at = time.monotonic()
        first.kill()
        wait_until(lambda: holder() not in (None, leader), LEASE_S + TICK_S + SLACK_S, message="takeover")
        # The lease expires at most LEASE_S after its last renewal; the new leader's next tick takes it.
        assert time.monotonic() - killed_at < LEASE_S + TICK_S + SLACK_S
    finally:
        first.stop()
        if second is not None:
            second.stop()
        client.close()
