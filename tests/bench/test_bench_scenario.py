"""The deployed scenario: its request bodies, its wrk script and the configs it gives both proxies."""

from __future__ import annotations

import http.server
import itertools
import shutil
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import _nginx
import orjson
import pytest
import yaml
from _options import parse_options
from _scenario import LARGE_BODY_BYTES, SMALL_BODY_BYTES, build_scenario, oip_body, wrk_script
from _turnout import turnout_config


@pytest.mark.parametrize("size", [SMALL_BODY_BYTES, LARGE_BODY_BYTES])
def test_oip_body_is_an_inference_request_of_about_the_size(size: int) -> None:
    body = oip_body(size)

    request = orjson.loads(body)
    tensor = request["inputs"][0]
    assert size - 10 <= len(body) <= size
    assert tensor["datatype"] == "FP32"
    assert tensor["shape"] == [1, len(tensor["data"])]


def test_deployed_scenario_sends_both_bodies_to_two_upstreams() -> None:
    scenario = build_scenario("deployed")

    assert scenario.method == "POST"
    assert scenario.upstreams == 2
    assert scenario.access_log
    assert [len(body) for body in scenario.bodies] == [len(oip_body(100)), len(oip_body(16_000))]


@pytest.mark.parametrize("unique_query", [False, True])
def test_wrk_script_quotes_each_body_and_adds_a_query_only_when_asked(unique_query: bool) -> None:
    scenario = build_scenario("deployed")

    script = wrk_script(scenario, unique_query)

    for body in scenario.bodies:
        assert f"[==[{body.decode()}]==]" in script
    assert 'wrk.format("POST", "/v2/models/bench/infer"' in script
    assert ('"?n=" .. counter' in script) is unique_query


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every POST with 200 and keeps what came: method, path and body."""

    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    seen: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_wrk_sends_the_bodies_in_turn_from_the_generated_script(tmp_path: Path) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed")
    scenario = build_scenario("deployed")
    script = tmp_path / "deployed.lua"
    script.write_text(wrk_script(scenario, unique_query=True))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        subprocess.run(
            [wrk, "-t1", "-c1", "-d1s", "-s", str(script), url], timeout=30, check=True, capture_output=True
        )
    finally:
        server.shutdown()
        server.server_close()
    seen = _Recorder.seen
    assert len(seen) >= 2
    # wrk asks the script for one request before it connects, so the count may start past 1.
    bodies = [body for _, body in seen]
    assert set(bodies) == set(scenario.bodies)
    assert all(first != second for first, second in itertools.pairwise(bodies))
    paths = [path for path, _ in seen]
    assert all(path.startswith("/v2/models/bench/infer?n=") for path in paths)
    assert len(set(paths)) == len(paths)


def test_turnout_config_balances_over_every_upstream() -> None:
    config = yaml.safe_load(turnout_config(1, 2, 9000, Path("/tmp/a.log"), extra_upstream_ports=(9001,)))

    assert config["clusters"]["up"] == {
        "endpoints": ["127.0.0.1:9000", "127.0.0.1:9001"],
        "balancer": "round_robin",
    }
    assert config["access_log"] == {"enabled": True, "path": "/tmp/a.log"}


def test_nginx_json_log_config_names_both_upstreams_and_buffers_its_log() -> None:
    text = _nginx.proxy_config(
        Path("/p"), 8080, 9000, access_log=True, extra_upstream_ports=(9001,), json_log=True
    )

    assert "server 127.0.0.1:9000;\n        server 127.0.0.1:9001;" in text
    assert "access_log /p/access.log bench_json buffer=64k flush=1s;" in text
    assert "log_format bench_json escape=json" in text


def test_nginx_accepts_the_json_log_config(tmp_path: Path) -> None:
    nginx = _nginx.nginx_path()
    if nginx is None:
        pytest.skip("nginx is not installed")
    prefix = tmp_path / "proxy"
    _nginx.write_config(prefix, _nginx.proxy_config(prefix, 18081, 18080, True, (18082,), json_log=True))
    argv = [*_nginx.nginx_argv(nginx, prefix, _nginx.nginx_version(nginx)), "-t"]
    checked = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr


def test_deployed_scenario_turns_the_access_log_on() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed: --scenario deployed refuses to start without it")
    opts = parse_options(["--scenario", "deployed"])

    assert opts.scenario == "deployed"
    assert opts.access_log


def test_best_case_stays_the_default() -> None:
    opts = parse_options([])

    assert opts.scenario == "best"
    assert not opts.access_log


def test_processes_refuses_the_deployed_scenario() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed: --scenario deployed refuses to start without it")
    import proxy

    assert proxy.main(["--scenario", "deployed", "--processes", "1,2"]) == 2
