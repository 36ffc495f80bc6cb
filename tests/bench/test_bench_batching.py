"""The batching benchmark's pieces: its gateway config, its wrk script, its reading of worker metrics."""

from __future__ import annotations

import argparse
import http.server
import itertools
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from _wrk import WrkRunner, wrk_command
from batching import (
    BATCHED_HEADER,
    NO_DELAY_HEADER,
    BenchModel,
    Row,
    _models,
    batch_counts,
    combine,
    gateway_config,
    model_seconds,
    pause_ms,
    queue_wait,
    request_bodies,
    write_wrk_script,
)

from gateway.config import load_config

METRICS = """# HELP turnout_worker_batch_size Batch size (first dimension) of each inference request
# TYPE turnout_worker_batch_size histogram
turnout_worker_batch_size_bucket{le="1.0",model="risk",version="2"} 3.0
turnout_worker_batch_size_count{model="risk",version="2"} 10.0
turnout_worker_batch_size_sum{model="risk",version="2"} 250.0
turnout_worker_batch_size_count{model="risk-mlp",version="1"} 4.0
turnout_worker_batch_size_sum{model="risk-mlp",version="1"} 128.0
turnout_worker_inference_seconds_count{model="risk",version="2"} 10.0
turnout_worker_inference_seconds_sum{model="risk",version="2"} 0.5
"""
GATEWAY_METRICS = """# TYPE turnout_batch_queue_delay_seconds histogram
turnout_batch_queue_delay_seconds_count{cluster="a",model="risk"} 3.0
turnout_batch_queue_delay_seconds_sum{cluster="a",model="risk"} 0.006
turnout_batch_queue_delay_seconds_count{cluster="b",model="risk"} 1.0
turnout_batch_queue_delay_seconds_sum{cluster="b",model="risk"} 0.002
turnout_batch_queue_delay_seconds_count{cluster="a",model="risk-mlp"} 7.0
turnout_batch_queue_delay_seconds_sum{cluster="a",model="risk-mlp"} 1.0
"""


def test_gateway_config_has_batched_no_delay_and_unbatched_routes_to_one_worker(tmp_path: Path) -> None:
    path = tmp_path / "turnout.yaml"
    path.write_text(gateway_config(8080, 9901, 9001, max_batch_size=32, max_queue_delay="2ms"))

    config = load_config(path, env={})

    batched, no_delay, unbatched = config.routes
    assert {r.backend.cluster for r in (batched, no_delay, unbatched)} == {"worker"}
    assert [item.name for item in batched.filters] == ["batching"]
    assert [item.name for item in no_delay.filters] == ["batching"]
    assert batched.filters[0].config["max_queue_delay"] == "2ms"
    assert no_delay.filters[0].config["max_queue_delay"] == "0ms"
    assert not unbatched.filters
    assert dict(batched.match.headers)[BATCHED_HEADER[0]].exact == BATCHED_HEADER[1]
    assert dict(no_delay.match.headers)[NO_DELAY_HEADER[0]].exact == NO_DELAY_HEADER[1]
    assert not unbatched.match.headers
    assert [e.address for e in config.clusters["worker"].endpoints] == ["127.0.0.1:9001"]


def test_worker_batch_counts_are_read_per_model_and_version() -> None:
    assert batch_counts(METRICS, BenchModel("risk", 2, "http")) == (10.0, 250.0)
    assert batch_counts(METRICS, BenchModel("risk-mlp", 1, "compute")) == (4.0, 128.0)
    assert batch_counts(METRICS, BenchModel("risk", 1, "http")) == (0.0, 0.0)


def test_model_time_is_read_from_the_inference_histogram() -> None:
    assert model_seconds(METRICS, BenchModel("risk", 2, "http")) == 0.5
    assert model_seconds(METRICS, BenchModel("risk-mlp", 1, "compute")) == 0.0


def test_queue_wait_sums_the_gateways_queue_delay_over_clusters() -> None:
    assert queue_wait(GATEWAY_METRICS, BenchModel("risk", 2, "http")) == pytest.approx((4.0, 0.008))
    assert queue_wait(GATEWAY_METRICS, BenchModel("risk-mlp", 1, "compute")) == (7.0, 1.0)
    assert queue_wait("", BenchModel("risk", 2, "http")) == (0.0, 0.0)


def test_rounds_combine_into_medians_of_latencies_means_of_rates_and_sums_of_counts() -> None:
    rounds = [
        Row("on", 1, 100.0, 5.0, 9.0, 500, 1, 100.0, 1.0, 2.0, 2.2),
        Row("on", 1, 200.0, 3.0, 7.0, 1000, 0, 200.0, 1.0, 1.0, 2.0),
        Row("on", 1, 300.0, 4.0, 8.0, 1500, 2, 300.0, 1.0, 1.5, 2.1),
    ]

    row = combine(rounds)

    assert (row.mode, row.concurrency, row.rounds) == ("on", 1, 3)
    assert (row.p50_ms, row.p99_ms, row.model_ms_per_call, row.wait_ms) == (4.0, 8.0, 1.5, 2.1)
    assert (row.requests_per_s, row.upstream_calls_per_s) == (200.0, 200.0)
    assert (row.requests, row.errors) == (3000, 3)


def test_the_idle_pause_is_max_queue_delay_in_whole_milliseconds() -> None:
    assert pause_ms("2ms") == 2
    assert pause_ms("5ms") == 5
    assert pause_ms("300us") == 1  # wrk waits whole milliseconds, and at least one


def test_models_option_names_known_models_only() -> None:
    assert [(m.name, m.version, m.bound) for m in _models("risk-mlp:1,risk:2")] == [
        ("risk-mlp", 1, "compute"),
        ("risk", 2, "http"),
    ]
    with pytest.raises(argparse.ArgumentTypeError):
        _models("risk:1")


def test_wrk_command_runs_a_given_script(tmp_path: Path) -> None:
    script = tmp_path / "x.lua"
    argv = wrk_command("http://127.0.0.1:1/", 4, 1.0, (("A", "b"),), script=script)

    assert argv[-3:] == ["-s", str(script), "http://127.0.0.1:1/"]
    with pytest.raises(ValueError):
        wrk_command("http://127.0.0.1:1/", 4, 1.0, unique_query=True, script=script)


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    seen: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers.get(BATCHED_HEADER[0], ""), body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_wrk_script_posts_every_body_in_turn(recorder: str, tmp_path: Path) -> None:
    rows = np.arange(3 * 30, dtype=np.float32).reshape(3, 30)
    bodies = request_bodies(rows)
    script = write_wrk_script(tmp_path / "infer.lua", bodies)
    runner = WrkRunner(list, (("Content-Type", "application/json"), BATCHED_HEADER), script=script)

    result = runner.run(recorder + "/v2/models/m/infer", 1, 1.0, tmp_path / "wrk.log")

    assert result.requests > 3 and result.errors == 0
    seen = _Recorder.seen
    assert {path for path, _, _ in seen} == {"/v2/models/m/infer"}
    assert {header for _, header, _ in seen} == {BATCHED_HEADER[1]}
    sent = [bodies.index(body) for _, _, body in seen]  # every body is one of ours...
    assert set(sent) == {0, 1, 2}
    assert all(b == (a + 1) % 3 for a, b in itertools.pairwise(sent))  # ...in turn
    first = orjson.loads(bodies[0])["inputs"][0]
    assert (first["shape"], first["data"][:2]) == ([1, 30], [0.0, 1.0])  # one row per request


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_paused_wrk_script_waits_before_each_request(recorder: str, tmp_path: Path) -> None:
    bodies = request_bodies(np.zeros((2, 30), dtype=np.float32))
    script = write_wrk_script(tmp_path / "paused.lua", bodies, pause_ms=50)
    runner = WrkRunner(list, (("Content-Type", "application/json"),), script=script)

    result = runner.run(recorder + "/v2/models/m/infer", 1, 1.0, tmp_path / "wrk.log")

    # One connection pausing 50 ms before each request sends at most about 20 in a second, where
    # the same script without the pause sends hundreds or more.
    assert 5 <= result.requests <= 21
    assert "function delay()" not in write_wrk_script(tmp_path / "plain.lua", bodies).read_text()
