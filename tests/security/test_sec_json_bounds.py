"""Deeply nested JSON: the bounded reader, and a real gateway answering 1,000 such bodies with 400s
while keeping no socket half-closed and no descriptor behind."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from gateway.core.json_bounds import MAX_DEPTH, JsonTooComplex, loads, nesting_depth
from tests.conftest import gateway_config
from tests.support.processes import GatewayProcess, Process, start_gateway, wait_until
from tests.support.raw_http import read_response

# The attack as it was seen: bodies of a few hundred bytes, nested 255 (orjson's write limit is
# 254) to 1024 levels (its read limit).
ATTACK_DEPTHS = (255, 1024)
ATTACK_REQUESTS = 1000
# Requests to each of the other JSON-reading routes: enough to leak descriptors visibly if any path did.
PER_ROUTE_REQUESTS = 100
# Concurrent client connections: several keep-alive connections, each reused for many bad bodies.
CLIENTS = 8
# Descriptors the gateway may hold beyond its count before the load (pooled upstream connections,
# a log file reopened): a leak of one per bad request would be hundreds.
FD_SLACK = 8
# A 400 takes milliseconds; an answer that never comes fails the test here, not at pytest's timeout.
ANSWER_TIMEOUT = aiohttp.ClientTimeout(total=10)
# /proc/net/tcp's state column for CLOSE_WAIT (the peer closed; we never did).
CLOSE_WAIT = "08"


def nested(depth: int, *, closed: bool = True) -> bytes:
    """An OIP-shaped body whose data nests `depth` levels (unclosed: the brackets never end)."""
    return (
        b'{"inputs":[{"name":"x","data":' + b"[" * depth + (b"1" + b"]" * depth if closed else b"") + b"}]}"
    )


# ----- the reader -----


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a":[{"b":{}}]}', 4),
        (b'{"a":"[[[[[[["}', 1),  # brackets in strings do not nest
        (b'["\\"[[[", [["x\\\\"]]]', 3),  # nor after an escaped quote; an escaped backslash ends one
        (b'{"\\u005b":["\\n[", {"k": [[]]}]}', 5),
        (b"[" * 300 + b"]" * 300, 300),
        (b"[" * 300, 300),  # unclosed: still counted
    ],
)
def test_nesting_depth_is_exact(text: bytes, depth: int) -> None:
    assert nesting_depth(text) == depth


def test_json_nested_past_the_limit_is_a_400_naming_it() -> None:
    assert loads(nested(MAX_DEPTH - 3)) is not None  # the envelope takes 3 levels
    with pytest.raises(JsonTooComplex) as refused:
        loads(nested(MAX_DEPTH - 2), "the feedback body")
    assert refused.value.status == 400
    assert refused.value.message == (
        f"the feedback body nests JSON {MAX_DEPTH + 1} levels deep; the depth limit is {MAX_DEPTH} levels"
    )
    with pytest.raises(JsonTooComplex):
        loads(b"[" * 2000)  # deeper than orjson reads: refused by the bound, not a parse error


def test_many_containers_that_do_not_nest_take_the_exact_check_and_pass() -> None:
    rows = orjson.dumps({"instances": [[float(i), 1.0] for i in range(5000)]})  # 5001 brackets, depth 3
    assert loads(rows)["instances"][4999] == [4999.0, 1.0]
    assert loads(memoryview(rows)[:]) == loads(rows)  # a view of the whole body, as split_body gives
    head = memoryview(b"[[1]]tail")[:5]
    assert loads(head) == [[1]]
    strings = orjson.dumps({"text": ["[" * 100, "{" * 100]})  # many brackets, all inside strings
    assert loads(strings)["text"][0] == "[" * 100


def test_a_custom_depth_limit_applies() -> None:
    with pytest.raises(JsonTooComplex, match="the depth limit is 2 levels"):
        loads(b"[[[1]]]", max_depth=2)
    assert loads(b"[[1]]", max_depth=2) == [[1]]


def test_invalid_json_within_the_bounds_is_still_orjsons_error() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        loads(b'{"a": ')


# ----- a real gateway under the attack -----


def _gateway(upstream: Process, tmp_path: Path, logs: Path) -> GatewayProcess:
    up = {"cluster": "up"}
    config = gateway_config(
        [f"127.0.0.1:{upstream.port}"],
        routes=[
            {"name": "fb", "match": {"path": "/v1/feedback"}, "backend": {"feedback": True}},
            {"name": "cached", "match": {"prefix": "/cached/"}, "backend": up, "filters": [{"cache": {}}]},
            {
                "name": "validated",
                "match": {"prefix": "/v2/"},
                "backend": up,
                "filters": [{"validate": {"oip_v2": True}}],
            },
            {
                "name": "batched",
                "match": {"prefix": "/batched/"},
                "backend": up,
                "filters": [{"batching": {"max_batch_size": 8}}],
            },
            {
                "name": "tokens",
                "match": {"prefix": "/tokens/"},
                "backend": up,
                "filters": [
                    {"rate_limit": {"limits": [{"key": "route", "rate": "100000/s", "cost": "tokens"}]}}
                ],
            },
            {
                "name": "renamed",
                "match": {"prefix": "/renamed/"},
                "backend": up,
                "filters": [{"transform": {"request_body_rename": {"inputs": "instances"}}}],
            },
        ],
    )
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "exp": {
            "kind": "ab",
            "unit": ["header:x-user-id"],
            "metrics": ["latency", "feedback:conversion"],
            "arms": {
                "control": {"cluster": "up", "weight": 50},
                "treatment": {"cluster": "up", "weight": 50},
            },
        }
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return start_gateway(path, config["listen"]["port"], config["admin"]["port"], logs)


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _close_wait_sockets(pid: int) -> int:
    """How many of the process's TCP sockets are in CLOSE_WAIT."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == CLOSE_WAIT and fields[9] in inodes:
                    count += 1
    return count


async def _send_all(url: str, bodies: list[tuple[str, bytes]]) -> list[tuple[str, int, Any]]:
    """Send every (path, body) over CLIENTS keep-alive connections; (path, status, JSON answer)."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    answers: list[tuple[str, int, Any]] = []

    async def client() -> None:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, timeout=ANSWER_TIMEOUT) as session:
            while not queue.empty():
                path, body = queue.get_nowait()
                headers = {"content-type": "application/json", "x-user-id": "u1"}
                async with session.post(f"{url}{path}", data=body, headers=headers) as response:
                    answers.append((path, response.status, await response.json(content_type=None)))

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return answers


async def test_a_thousand_deeply_nested_bodies_get_400s_and_leave_no_socket_open(
    upstream_a: Process, tmp_path: Path, session_logs: Path
) -> None:
    gateway = _gateway(upstream_a, tmp_path, session_logs)
    try:
        pid = gateway.proc.pid
        # Warm up each route with a valid body, so pooled upstream connections exist before counting.
        good = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]})
        warm = await _send_all(gateway.url, [("/cached/m", good), ("/tokens/m", good), ("/renamed/m", good)])
        assert {status for _, status, _ in warm} == {200}, warm
        before = _descriptors(pid)

        chance = random.Random(12)  # the same bodies every run
        bodies = [("/cached/m", nested(chance.randint(*ATTACK_DEPTHS))) for _ in range(ATTACK_REQUESTS)]
        bodies[::7] = [
            ("/cached/m", nested(depth, closed=False)) for depth in range(300, 300 + len(bodies[::7]))
        ]
        for path in ("/v2/models/m/infer", "/batched/v2/models/m/infer", "/batched/m:predict", "/tokens/m",
                     "/renamed/m", "/v1/feedback"):  # fmt: skip
            bodies += [(path, nested(chance.randint(*ATTACK_DEPTHS))) for _ in range(PER_ROUTE_REQUESTS)]
        answers = await _send_all(gateway.url, bodies)

        assert len(answers) == len(bodies)
        wrong = [(path, status, answer) for path, status, answer in answers if status != 400]
        assert not wrong, wrong[:5]
        messages = {answer["error"].split(" nests JSON ")[1].split(";")[1] for _, _, answer in answers}
        assert messages == {f" the depth limit is {MAX_DEPTH} levels"}
        # Every client connection is closed by now: the gateway must have closed its side too.
        wait_until(lambda: _close_wait_sockets(pid) == 0, 10.0, message="no socket in CLOSE_WAIT")
        wait_until(lambda: _descriptors(pid) <= before + FD_SLACK, 10.0, message="descriptors released")
        assert gateway.proc.poll() is None
        # The connection that got a 400 serves the next request: bad and good bodies on one socket.
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            for body in (nested(600), good):
                head = f"POST /cached/m HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
                writer.write(head.encode() + body)
            assert [(await read_response(reader)).status for _ in range(2)] == [400, 200]
        finally:
            writer.close()
    finally:
        gateway.stop()
