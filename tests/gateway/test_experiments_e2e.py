"""Experiments through a real gateway: sticky arms, cookies, forcing, shadow isolation, canary control,
feedback, and no lost events. Arms are real upstream processes that name themselves in answers."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import gateway_config
from tests.support.processes import Process, free_port, start_gateway, start_upstream


def _ab_config(a: Process, b: Process, tmp_path: Path, **experiment: Any) -> dict[str, Any]:
    config = gateway_config(
        [f"127.0.0.1:{a.port}"],
        routes=[
            {"name": "ab", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}},
        ],
    )
    config["clusters"] = {
        "a": {"endpoints": [f"127.0.0.1:{a.port}"]},
        "b": {"endpoints": [f"127.0.0.1:{b.port}"]},
    }
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "exp": {
            "kind": "ab",
            "unit": ["header:x-user-id", "cookie:turnout_uid"],
            "arms": {"control": {"cluster": "a", "weight": 50}, "treatment": {"cluster": "b", "weight": 50}},
            **experiment,
        }
    }
    return config


async def _get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    async with session.get(url, **kwargs) as response:
        body = await response.read()
        return response.status, dict(response.headers), json.loads(body) if body else None


async def test_arms_are_sticky_split_evenly_and_named(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    async with (
        make_gateway(_ab_config(upstream_a, upstream_b, tmp_path)) as gw,
        aiohttp.ClientSession() as session,
    ):
        url = f"http://127.0.0.1:{gw.data_port}/echo"
        arms: dict[str, set[str]] = {}
        for user in range(300):
            for _ in range(2):
                status, headers, body = await _get(session, url, headers={"x-user-id": f"user-{user}"})
                assert status == 200
                assert headers["x-turnout-experiment"] == "exp"
                arm = headers["x-turnout-arm"]
                assert body["name"] == ("a" if arm == "control" else "b")  # the arm's cluster answered
                arms.setdefault(f"user-{user}", set()).add(arm)
        assert all(len(seen) == 1 for seen in arms.values())
        split = Counter(next(iter(seen)) for seen in arms.values())
        assert 110 <= split["control"] <= 190  # 300 users at 50/50: far outside this is a broken hash


async def test_a_cookie_keeps_a_browser_sticky(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    async with make_gateway(_ab_config(upstream_a, upstream_b, tmp_path)) as gw:
        url = f"http://127.0.0.1:{gw.data_port}/echo"
        # unsafe=True: aiohttp's jar otherwise keeps no cookie for an IP address such as 127.0.0.1.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(url) as response:
                cookie = response.headers["Set-Cookie"]
                first_arm = response.headers["x-turnout-arm"]
            assert cookie.startswith("turnout_uid=")
            assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
            for _ in range(5):  # the session sends the cookie back
                async with session.get(url) as response:
                    assert response.headers["x-turnout-arm"] == first_arm
                    assert "Set-Cookie" not in response.headers


async def test_forcing_an_arm_needs_the_scope(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    import hashlib

    config = _ab_config(upstream_a, upstream_b, tmp_path, force_header="x-force-arm")
    keys = [
        {"sha256": hashlib.sha256(b"qa-key").hexdigest(), "principal": "qa", "scopes": ["experiments:force"]},
        {"sha256": hashlib.sha256(b"user-key").hexdigest(), "principal": "bob", "scopes": ["infer"]},
    ]
    config["routes"][0]["filters"] = [{"auth_apikey": {"keys": keys}}]
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.data_port}/echo"
        for user in range(20):
            forced = await _get(
                session,
                url,
                headers={"x-api-key": "qa-key", "x-user-id": f"u{user}", "x-force-arm": "treatment"},
            )
            assert forced[1]["x-turnout-arm"] == "treatment"
        natural = Counter()
        for user in range(20):
            plain = await _get(
                session,
                url,
                headers={"x-api-key": "user-key", "x-user-id": f"u{user}", "x-force-arm": "treatment"},
            )
            natural[plain[1]["x-turnout-arm"]] += 1
        assert natural["control"] > 0  # without the scope the header is ignored


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP server that accepts connections and never answers: the slowest possible mirror."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


async def test_a_slow_or_failing_mirror_never_touches_the_primary(
    make_gateway: Any, upstream_a: Process, black_hole: int, tmp_path: Path
) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[
            {"name": "shadowed", "match": {"prefix": "/"}, "backend": {"experiment": "mirror"}},
        ],
    )
    config["clusters"] = {
        "primary": {"endpoints": [f"127.0.0.1:{upstream_a.port}"]},
        "slow": {"endpoints": [f"127.0.0.1:{black_hole}"], "timeouts": {"request": "2s"}},
        "down": {"endpoints": [f"127.0.0.1:{free_port()}"], "retry": {"attempts": 0}},
    }
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "mirror": {
            "kind": "shadow",
            "primary": {"cluster": "primary"},
            "mirrors": [{"cluster": "slow", "fraction": 1.0}, {"cluster": "down", "fraction": 1.0}],
            "queue_size": 50,
        }
    }
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.data_port}/echo"
        latencies = []
        for i in range(100):
            started = time.monotonic()
            status, _, body = await _get(session, url, headers={"x-user-id": f"u{i}"})
            latencies.append(time.monotonic() - started)
            assert status == 200 and body["name"] == "a"
        latencies.sort()
        # The mirror never answers within 2 s; the primary's answers do not wait for it.
        assert latencies[49] < 0.1 and latencies[98] < 0.5
        async with session.get(f"http://127.0.0.1:{gw.admin_port}/admin/experiments/mirror") as response:
            shadow = (await response.json())["shadow"]
        assert shadow  # the comparison is exposed; drops and errors are counted, not raised


def _canary_config(baseline: Process, candidate: Process, tmp_path: Path) -> dict[str, Any]:
    config = gateway_config(
        [f"127.0.0.1:{baseline.port}"],
        routes=[
            {"name": "canary", "match": {"prefix": "/"}, "backend": {"experiment": "rollout"}},
        ],
    )
    config["clusters"] = {
        "stable": {"endpoints": [f"127.0.0.1:{baseline.port}"], "retry": {"attempts": 0}},
        "next": {"endpoints": [f"127.0.0.1:{candidate.port}"], "retry": {"attempts": 0}},
    }
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "rollout": {
            "kind": "canary",
            "unit": "header:x-user-id",
            "baseline": {"cluster": "stable"},
            "candidate": {"cluster": "next"},
            "steps": [{"percent": 50, "min_duration": "100ms", "min_units": 100}, {"percent": 100}],
            "guardrails": [{"metric": "error_rate", "max_increase": 0.02}],
            "interval": "50ms",
        }
    }
    return config


_UNIT_SERIAL = iter(range(10**9))


async def _drive(session: aiohttp.ClientSession, url: str, users: int, rounds: int) -> Counter[int]:
    """Requests from users never seen before (a canary step waits for enough distinct units)."""
    statuses: Counter[int] = Counter()
    for _ in range(rounds):
        results = await asyncio.gather(
            *(_get(session, url, headers={"x-user-id": f"unit-{next(_UNIT_SERIAL)}"}) for _ in range(users))
        )
        statuses.update(status for status, _, _ in results)
    return statuses


async def _canary_state(session: aiohttp.ClientSession, admin: str) -> dict[str, Any]:
    async with session.get(f"{admin}/admin/experiments/rollout") as response:
        payload = await response.json()
    state = dict(payload["state"])
    state["last_decision"] = (payload.get("decisions") or [{}])[-1]
    return state


async def test_a_failing_canary_is_rolled_back(make_gateway: Any, tmp_path: Path, session_logs: Path) -> None:
    stable = start_upstream("stable", log_dir=session_logs)
    broken = start_upstream("broken", log_dir=session_logs, fail_rate=0.1)
    try:
        async with make_gateway(_canary_config(stable, broken, tmp_path)) as gw, aiohttp.ClientSession() as s:
            url, admin = f"http://127.0.0.1:{gw.data_port}/echo", f"http://127.0.0.1:{gw.admin_port}"
            deadline = time.monotonic() + 60
            while (await _canary_state(s, admin))["status"] != "rolled_back":
                assert time.monotonic() < deadline, json.dumps(await _canary_state(s, admin))[:3000]
                await _drive(s, url, users=50, rounds=2)
            async with s.get(f"{admin}/admin/experiments/rollout") as response:
                payload = await response.json()
            assert payload["shares"].get("candidate", 0) == 0
            assert any(d["action"] == "rollback" for d in payload["decisions"])
            statuses = await _drive(s, url, users=50, rounds=1)
            assert statuses == Counter({200: 50})  # every unit is back on the healthy baseline
    finally:
        stable.stop()
        broken.stop()


async def test_a_healthy_canary_is_promoted_and_resumes_after_a_restart(
    tmp_path: Path, session_logs: Path, upstream_a: Process, upstream_b: Process
) -> None:
    config = _canary_config(upstream_a, upstream_b, tmp_path)
    config["experiments"]["rollout"]["steps"] = [
        {"percent": 20, "min_duration": "100ms", "min_units": 100},
        {"percent": 60, "min_duration": "100ms", "min_units": 100},
        {"percent": 100},
    ]
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(path, config["listen"]["port"], config["admin"]["port"], session_logs)
    admin = gateway.admin_url
    try:
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 90
            restarted = False
            while (state := await _canary_state(s, admin))["status"] != "promoted":
                assert time.monotonic() < deadline, state
                if not restarted and state.get("step", 0) >= 1:
                    step = state["step"]
                    gateway.stop()  # SIGTERM: the controller's state is stored, not lost
                    gateway = start_gateway(
                        path, config["listen"]["port"], config["admin"]["port"], session_logs
                    )
                    assert (await _canary_state(s, admin))["step"] >= step
                    restarted = True
                await _drive(s, f"{gateway.url}/echo", users=60, rounds=2)
            assert restarted
    finally:
        gateway.stop()


async def test_feedback_joins_the_right_arm_and_sigterm_loses_no_event(
    tmp_path: Path, session_logs: Path, upstream_a: Process, upstream_b: Process
) -> None:
    config = _ab_config(
        upstream_a, upstream_b, tmp_path, metrics=["latency", "error_rate", "feedback:conversion"]
    )
    config["routes"].insert(
        0, {"name": "fb", "match": {"path": "/v1/feedback"}, "backend": {"feedback": True}}
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(path, config["listen"]["port"], config["admin"]["port"], session_logs)
    sent = 0
    try:
        async with aiohttp.ClientSession() as s:
            arm_of: dict[str, str] = {}
            for user in range(120):
                _, headers, _ = await _get(s, f"{gateway.url}/echo", headers={"x-user-id": f"u{user}"})
                arm_of[f"u{user}"] = headers["x-turnout-arm"]
                sent += 1
            for user, arm in arm_of.items():  # only treatment users convert
                payload = {
                    "unit_id": user,
                    "metric": "conversion",
                    "value": 1.0 if arm == "treatment" else 0.0,
                }
                async with s.post(f"{gateway.url}/v1/feedback", json=payload) as response:
                    assert response.status == 202
            async with s.post(
                f"{gateway.url}/v1/feedback", json={"metric": "conversion", "value": 1}
            ) as response:
                assert response.status == 400
                assert "request_id or unit_id" in (await response.json())["error"]
            # A burst, then SIGTERM straight away: every exposure must reach the store.
            burst = await asyncio.gather(
                *(_get(s, f"{gateway.url}/echo", headers={"x-user-id": f"burst-{i}"}) for i in range(200))
            )
            sent += sum(1 for status, _, _ in burst if status == 200)
            gateway.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(gateway.proc.wait, 20) == 0
        with sqlite3.connect(tmp_path / "events.db") as db:
            tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
            exposure_table = next(t for t in tables if "exposure" in t)
            exposures = db.execute(f"select count(*) from {exposure_table}").fetchone()[0]
        assert exposures == sent
        gateway = start_gateway(path, config["listen"]["port"], config["admin"]["port"], session_logs)
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{gateway.admin_url}/admin/experiments/exp") as response,
        ):
            arms = {a["arm"]: a for a in (await response.json())["status"]["arms"]}
        conversion = {name: arm["metrics"]["feedback:conversion"] for name, arm in arms.items()}
        # Conversion is per unit: the treatment users who converted over all its units (burst users
        # sent no feedback, so they count as not converted); no control user converted.
        converted = sum(1 for arm in arm_of.values() if arm == "treatment")
        assert conversion["treatment"] == pytest.approx(converted / arms["treatment"]["units"])
        assert conversion["control"] == pytest.approx(0.0)
    finally:
        gateway.stop()


async def test_stickiness_holds_across_two_gateway_processes(
    tmp_path: Path, session_logs: Path, upstream_a: Process, upstream_b: Process
) -> None:
    gateways = []
    for index in range(2):
        config = _ab_config(upstream_a, upstream_b, tmp_path / f"g{index}")
        (tmp_path / f"g{index}").mkdir()
        path = tmp_path / f"g{index}" / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        gateways.append(start_gateway(path, config["listen"]["port"], config["admin"]["port"], session_logs))
    try:
        async with aiohttp.ClientSession() as s:
            for user in range(100):
                arms = {
                    (await _get(s, f"{g.url}/echo", headers={"x-user-id": f"u{user}"}))[1]["x-turnout-arm"]
                    for g in gateways
                }
                assert len(arms) == 1  # no shared state: the hash alone decides
    finally:
        for g in gateways:
            g.stop()


async def test_affinity_pins_each_unit_to_one_endpoint_of_its_arm(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    config = _ab_config(upstream_a, upstream_b, tmp_path, affinity=True)
    pair = [f"127.0.0.1:{upstream_a.port}", f"127.0.0.1:{upstream_b.port}"]
    config["clusters"] = {"a": {"endpoints": pair}, "b": {"endpoints": pair}}  # round robin otherwise
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.data_port}/echo"
        served: dict[str, set[str]] = {}
        for user in range(40):
            for _ in range(4):
                _, _, body = await _get(session, url, headers={"x-user-id": f"user-{user}"})
                served.setdefault(f"user-{user}", set()).add(body["name"])
        assert all(len(names) == 1 for names in served.values())
        assert {next(iter(n)) for n in served.values()} == {"a", "b"}  # yet both endpoints serve


async def test_report_and_export_from_the_command_line(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.support.processes import ROOT, _env

    config = _ab_config(upstream_a, upstream_b, tmp_path)
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        for user in range(30):
            await _get(session, f"http://127.0.0.1:{gw.data_port}/echo", headers={"x-user-id": f"u{user}"})
    # The gateway stopped: its events are flushed to the SQLite store.
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(config))

    def turnout(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    report = turnout("report", "exp", "--config", str(path), "--format", "json")
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    arms = {arm["name"]: arm for arm in document["arms"]}
    assert sum(arm["units"] for arm in arms.values()) == 30
    assert sum(arm["requests"] for arm in arms.values()) == 30
    assert document["decision"]["action"] in ("ship", "roll_back", "keep_running", "unhealthy")
    html = turnout(
        "report", "exp", "--config", str(path), "--format", "html", "--out", str(tmp_path / "r.html")
    )
    assert html.returncode == 0, html.stderr
    assert (tmp_path / "r.html").read_text().count("<svg") >= 2
    export = turnout(
        "export", "exp", "--config", str(path), "--kind", "exposures", "--out", str(tmp_path / "e.csv")
    )
    assert export.returncode == 0, export.stderr
    lines = (tmp_path / "e.csv").read_text().strip().splitlines()
    assert len(lines) == 31  # a header and one row per request
    missing = turnout("report", "nope", "--config", str(path))
    assert missing.returncode == 1 and "no experiment 'nope'" in missing.stderr


async def test_mirrors_see_the_rewritten_path_the_primary_saw(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[
            {
                "name": "shadowed",
                "match": {"prefix": "/x/"},
                "rewrite": {"prefix": "/status/"},
                "backend": {"experiment": "mirror"},
            },
        ],
    )
    config["clusters"] = {
        "primary": {"endpoints": [f"127.0.0.1:{upstream_a.port}"]},
        "copy": {"endpoints": [f"127.0.0.1:{upstream_b.port}"]},
    }
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "mirror": {
            "kind": "shadow",
            "primary": {"cluster": "primary"},
            "mirrors": [{"cluster": "copy", "fraction": 1.0}],
        }
    }
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        for i in range(20):
            status, _, _ = await _get(
                session, f"http://127.0.0.1:{gw.data_port}/x/201", headers={"x-user-id": f"u{i}"}
            )
            assert status == 201
        admin = f"http://127.0.0.1:{gw.admin_port}/admin/experiments/mirror"
        deadline = time.monotonic() + 10
        while True:
            async with session.get(admin) as response:
                tally = next(iter((await response.json())["shadow"]["mirrors"].values()))
            if tally["compared"] >= 20 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    # A mirror sent to /x/201 would hit the upstream's echo (200) and mismatch the primary's 201.
    assert tally["compared"] >= 20 and tally["status_mismatches"] == 0


async def test_a_changed_experiment_config_starts_afresh_instead_of_resuming_old_state(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    config = _ab_config(upstream_a, upstream_b, tmp_path)
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}/admin/experiments/exp"
        async with session.post(f"{admin}/weights", json={"weights": {"control": 90, "treatment": 10}}) as r:
            assert r.status == 200
    # Same config: the operator's weights resume after a restart.
    async with (
        make_gateway(config) as gw,
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{gw.admin_port}/admin/experiments/exp") as response,
    ):
        assert (await response.json())["shares"] == {"control": 0.9, "treatment": 0.1}
    # The arms were renamed in the file: the stored state is for arms that no longer exist.
    arms = config["experiments"]["exp"]["arms"]
    config["experiments"]["exp"]["arms"] = {"v1": arms["control"], "v2": arms["treatment"]}
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        status, headers, _ = await _get(
            session, f"http://127.0.0.1:{gw.data_port}/echo", headers={"x-user-id": "someone"}
        )
        assert status == 200 and headers["x-turnout-arm"] in ("v1", "v2")
        async with session.get(f"http://127.0.0.1:{gw.admin_port}/admin/experiments/exp") as response:
            body = await response.json()
        assert body["shares"] == {"v1": 0.5, "v2": 0.5}
        assert body["state"]["phase"] >= 1  # a new phase: old events are not analysed with new ones


async def test_a_cache_on_an_experiment_route_keys_by_arm(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    config = _ab_config(upstream_a, upstream_b, tmp_path)
    config["routes"][0]["filters"] = [{"cache": {"ttl": "60s", "methods": ["POST"]}}]
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.data_port}/echo"

        async def post(user: str) -> tuple[str, str, str]:
            async with session.post(url, data=b'{"x": 1}', headers={"x-user-id": user}) as response:
                body = await response.json()
                return response.headers["x-turnout-arm"], response.headers["x-turnout-cache"], body["name"]

        users = [f"user-{i}" for i in range(40)]
        first = {u: await post(u) for u in users}
        again = {u: await post(u) for u in users}
    for user in users:
        arm, _, served_by = again[user]
        assert arm == first[user][0]
        # Each arm's answer comes from its own upstream, cached or not: no arm sees the other's.
        assert served_by == ("a" if arm == "control" else "b")
    outcomes = Counter(cache for _, cache, _ in again.values())
    assert outcomes["hit"] == len(users)  # the same body within an arm is a hit
    assert Counter(cache for _, cache, _ in first.values())["miss"] == 2  # one miss per arm
