"""Experiment data a client cannot spoil: feedback attributed by the gateway's exposure id, values
finite and within their metric's bounds, unknown ids answered 404, and an analysis that survives what
an older version stored (1e308 twice overflows to infinity), after a restart, in the admin API, the
report and `turnout report`. Real gateway and upstream processes on loopback."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.conftest import gateway_config
from tests.support.processes import ROOT, GatewayProcess, Process, _env, start_gateway

# Bounds declared for the revenue metric: a refund is not feedback, and no order is above 1000.
REVENUE_BOUNDS = {"min": 0, "max": 1000}


def _config(a: Process, b: Process, db: Path) -> dict[str, Any]:
    config = gateway_config(
        [f"127.0.0.1:{a.port}"],
        routes=[
            {"name": "fb", "match": {"path": "/v1/feedback"}, "backend": {"feedback": True}},
            {"name": "ab", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}},
        ],
    )
    config["clusters"] = {
        "a": {"endpoints": [f"127.0.0.1:{a.port}"]},
        "b": {"endpoints": [f"127.0.0.1:{b.port}"]},
    }
    config["state"] = {"sqlite_path": str(db)}
    config["experiments"] = {
        "exp": {
            "kind": "ab",
            "unit": "header:x-user-id",
            "arms": {"control": {"cluster": "a"}, "treatment": {"cluster": "b"}},
            "metrics": ["latency", "error_rate", "feedback:revenue"],
            "feedback_bounds": {"revenue": REVENUE_BOUNDS},
        }
    }
    return config


def _start(tmp_path: Path, config: dict[str, Any], logs: Path) -> GatewayProcess:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return start_gateway(path, config["listen"]["port"], config["admin"]["port"], logs)


async def _post(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.post(url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def _revenue(
    session: aiohttp.ClientSession, gateway: GatewayProcess, value: Any, **names: str
) -> tuple[int, Any]:
    """Post a revenue value for the exposure (or unit) that `names` name."""
    payload = {"metric": "revenue", "value": value, **names}
    return await _post(session, f"{gateway.url}/v1/feedback", json=payload)


async def test_feedback_is_credited_to_one_exposure_named_by_the_gateway(
    tmp_path: Path, session_logs: Path, upstream_a: Process, upstream_b: Process
) -> None:
    db = tmp_path / "events.db"
    gateway = _start(tmp_path, _config(upstream_a, upstream_b, db), session_logs)
    try:
        async with aiohttp.ClientSession() as s:
            exposure_of: dict[str, str] = {}
            arms: dict[str, str] = {}
            user = 0
            while min(list(arms.values()).count("control"), list(arms.values()).count("treatment")) < 3:
                user += 1
                headers = {"x-user-id": f"user-{user}", "x-request-id": "same-for-everyone"}
                async with s.get(f"{gateway.url}/echo", headers=headers) as response:
                    assert response.status == 200
                    assert response.headers["x-request-id"] == "same-for-everyone"  # kept for tracing
                    exposure_of[f"user-{user}"] = response.headers["x-turnout-exposure-id"]
                    arms[f"user-{user}"] = response.headers["x-turnout-arm"]
            assert len(set(exposure_of.values())) == len(exposure_of)  # one id per exposure
            assert "same-for-everyone" not in exposure_of.values()

            status, body = await _revenue(s, gateway, 10, request_id="same-for-everyone")
            assert status == 404 and "not an exposure id" in body["error"]
            credited = next(iter(exposure_of))
            status, body = await _revenue(s, gateway, 10, exposure_id=exposure_of[credited])
            assert status == 202 and body == {
                "accepted": True,
                "exposure_id": exposure_of[credited],
                "experiments": ["exp"],
            }

            # Without an x-request-id of its own, the client may send back the one it was given.
            async with s.get(f"{gateway.url}/echo", headers={"x-user-id": "solo"}) as response:
                given = response.headers["x-request-id"]
                assert response.headers["x-turnout-exposure-id"] == given
            status, _ = await _revenue(s, gateway, 5, request_id=given)
            assert status == 202

            status, body = await _revenue(s, gateway, 1, exposure_id="never-made")
            assert status == 404 and "never-made" in body["error"]
            refused = ((1e308, "value: 1e+308 is outside"), (-1, "value: -1 is outside"), ("10", "value:"))
            for value, field in refused:
                status, body = await _revenue(s, gateway, value, exposure_id=exposure_of[credited])
                assert status == 400 and field in body["error"], body
            overflowing = b'{"exposure_id": "x", "metric": "revenue", "value": 1e400}'
            status, body = await _post(s, f"{gateway.url}/v1/feedback", data=overflowing)
            assert status == 400
            async with s.get(f"{gateway.admin_url}/metrics") as response:
                metrics = await response.text()
            assert 'turnout_experiment_feedback_total{result="unknown"} 2.0' in metrics
            assert 'turnout_experiment_feedback_total{result="out_of_bounds"} 2.0' in metrics
            assert 'turnout_experiment_feedback_total{result="accepted"} 2.0' in metrics
    finally:
        assert gateway.stop() == 0
    with sqlite3.connect(db) as store:
        rows = store.execute("SELECT exposure_id, value FROM feedback WHERE matched ORDER BY id").fetchall()
    assert rows == [(exposure_of[credited], 10.0), (given, 5.0)]  # one exposure each, never six


def _as_an_older_version_stored(db: Path, unit: str) -> None:
    """Two values of 1e308 summed to infinity; a NaN stored as NULL."""
    with sqlite3.connect(db) as store:
        store.execute(
            "INSERT INTO moments VALUES ('exp', 0, 'control', 'feedback:revenue', 2, ?, ?) ON CONFLICT "
            "DO UPDATE SET count = 2, total = excluded.total, total_sq = excluded.total_sq",
            (math.inf, math.inf),
        )
        store.execute(
            "INSERT INTO unit_sums VALUES ('exp', 0, 'control', 's:feedback:revenue', NULL) ON CONFLICT "
            "DO UPDATE SET value = NULL"
        )
        store.execute(
            "INSERT INTO unit_totals VALUES ('exp', 0, 'control', ?, 'feedback:revenue', ?) ON CONFLICT "
            "DO UPDATE SET value = excluded.value",
            (unit, math.inf),
        )
        for value in (1e308, 1e308, None):
            store.execute(
                "INSERT INTO feedback (metric, value, time, unit_id, experiment, matched) "
                "VALUES ('revenue', ?, 1.0, ?, 'exp', 1)",
                (value, unit),
            )


async def test_overflowed_values_in_the_store_are_reported_not_fatal_after_a_restart(
    tmp_path: Path, session_logs: Path, upstream_a: Process, upstream_b: Process
) -> None:
    db = tmp_path / "events.db"
    config = _config(upstream_a, upstream_b, db)
    gateway = _start(tmp_path, config, session_logs)
    try:
        async with aiohttp.ClientSession() as s:
            control = None
            for user in range(60):
                async with s.get(f"{gateway.url}/echo", headers={"x-user-id": f"u{user}"}) as response:
                    exposure = response.headers["x-turnout-exposure-id"]
                    if response.headers["x-turnout-arm"] == "control":
                        control = f"u{user}"
                assert (await _revenue(s, gateway, 3, exposure_id=exposure))[0] == 202
            assert control is not None
    finally:
        assert gateway.stop() == 0
    _as_an_older_version_stored(db, control)
    gateway = _start(tmp_path, config, session_logs)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{gateway.admin_url}/admin/experiments/exp") as response:
                assert response.status == 200
                status = (await response.json())["status"]
            assert any("control: feedback:revenue" in line for line in status["health"]["unusable"])
            arms = {arm["arm"]: arm for arm in status["arms"]}
            assert arms["control"]["metrics"]["feedback:revenue"] is None
            assert arms["treatment"]["metrics"]["feedback:revenue"] == 3.0
            async with s.get(f"{gateway.admin_url}/admin/experiments/exp/report?format=html") as response:
                assert response.status == 200
                assert "3 raw feedback values are missing, not finite or beyond" in await response.text()
            # New feedback for the unit whose stored total overflowed is still written and counted.
            async with s.get(f"{gateway.url}/echo", headers={"x-user-id": control}) as response:
                exposure = response.headers["x-turnout-exposure-id"]
            assert (await _revenue(s, gateway, 1, exposure_id=exposure))[0] == 202
    finally:
        assert gateway.stop() == 0
    with sqlite3.connect(db) as store:
        assert store.execute("SELECT COUNT(*) FROM feedback WHERE value = 1.0").fetchone() == (1,)
    for fmt in ("json", "md", "html"):
        report = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "report", "exp", "--config", str(tmp_path / "gateway.yaml"),
             "--format", fmt],
            cwd=ROOT, env={**_env(), "PYTHONWARNINGS": "error"}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert report.returncode == 0, report.stderr
        assert "feedback:revenue" in report.stdout and "stored sums are not finite" in report.stdout
