"""The admin API refuses endpoints it must not reach and numbers out of range, naming the field.

Sent to a real gateway's admin port as a trusted loopback client would: these are the checks that
hold even when the caller is allowed in.
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.admin_inputs import refusal
from gateway.config import ConfigError
from gateway.loading import load_gateway_config
from tests.conftest import gateway_config
from tests.support.processes import Process

JSON = {"Content-Type": "application/json"}


async def _post(session: aiohttp.ClientSession, url: str, data: bytes) -> tuple[int, Any]:
    async with session.post(url, data=data, headers=JSON) as response:
        return response.status, await response.json(content_type=None)


async def _addresses(session: aiohttp.ClientSession, admin: str) -> list[str]:
    async with session.get(f"{admin}/admin/clusters") as response:
        return [e["address"] for e in (await response.json())["up"]["endpoints"]]


async def test_link_local_and_metadata_endpoints_are_refused(make_gateway: Any, upstream_a: Process) -> None:
    a = f"127.0.0.1:{upstream_a.port}"
    async with make_gateway(gateway_config([a])) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        url = f"{admin}/admin/clusters/up/endpoints"
        for address, reason in (
            ("169.254.169.254:80", "cloud metadata service"),
            ("169.254.10.1:8080", "link-local"),
            ("[fe80::1]:80", "link-local"),
            ("[fd00:ec2::254]:80", "cloud metadata service"),
            ("metadata.google.internal:80", "cloud metadata service"),
            ("METADATA.GOOGLE.INTERNAL.:80", "cloud metadata service"),
            ("[::ffff:169.254.169.254]:80", "cloud metadata service"),  # IPv4-mapped
            ("[64:ff9b::a9fe:a9fe]:80", "cloud metadata service"),  # NAT64 of 169.254.169.254
            ("2852039166:80", "cloud metadata service"),  # 169.254.169.254 as one number: resolved first
            ("0.0.0.0:80", "not an address a request can be sent to"),
        ):
            status, body = await _post(session, url, f'{{"address": "{address}"}}'.encode())
            assert status == 400 and body["field"] == "address", (address, body)
            assert reason in body["error"], (address, body)
        assert await _addresses(session, admin) == [a]


async def test_the_config_option_lets_link_local_endpoints_in(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    config["admin"]["allow_link_local_endpoints"] = True
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        status, body = await _post(
            session, f"{admin}/admin/clusters/up/endpoints", b'{"address": "169.254.169.254:80"}'
        )
        assert (status, body["registered"]) == (201, True)
        assert "169.254.169.254:80" in await _addresses(session, admin)


def test_the_config_option_is_validated_with_its_location(tmp_path: Path) -> None:
    config = gateway_config(["127.0.0.1:9"])
    config["admin"]["allow_link_local_endpoints"] = "sometimes"
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as refused:
        load_gateway_config(path)
    assert "admin.allow_link_local_endpoints" in str(refused.value)
    assert "gw.yaml:" in str(refused.value)


async def test_weights_out_of_range_are_refused_naming_the_field(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    a, b = f"127.0.0.1:{upstream_a.port}", f"127.0.0.1:{upstream_b.port}"
    config = gateway_config(
        [a], routes=[{"name": "ab", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}}]
    )
    config["clusters"]["b"] = {"endpoints": [b]}
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "exp": {
            "kind": "ab",
            "unit": ["header:x-user-id"],
            "arms": {"control": {"cluster": "up", "weight": 50}, "treatment": {"cluster": "b", "weight": 50}},
        }
    }
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        endpoints = f"{admin}/admin/clusters/up/endpoints"
        for weight in (b"1e308", b"-1", b"0", b"1001", b"2.5", b'"3"', b"true", b"null"):
            status, body = await _post(
                session, endpoints, b'{"address": "%s", "weight": %s}' % (b.encode(), weight)
            )
            assert (status, body["field"]) == (400, "weight"), (weight, body)
            assert body["error"] == "weight must be a whole number from 1 to 1000"
        assert await _addresses(session, admin) == [a]

        experiment = f"{admin}/admin/experiments/exp"
        async with session.get(experiment) as response:
            before = (await response.json())["state"]
        for path, data, field in (
            ("weights", b'{"weights": {"control": 1e308, "treatment": 1}}', "weights.control"),
            ("weights", b'{"weights": {"control": -1, "treatment": 1}}', "weights.control"),
            ("weights", b'{"weights": {"control": "90", "treatment": 10}}', "weights.control"),
            ("weights", b'{"weights": []}', "weights"),
            ("weights", b"{}", "weights"),
            ("coverage", b'{"percent": 1e308}', "percent"),
            ("coverage", b'{"percent": -5}', "percent"),
            ("coverage", b'{"percent": "50"}', "percent"),
            ("promote", b'{"arm": 1}', "arm"),
            ("promote", b"[1]", "body"),
            ("pause", b"{not json", "body"),
        ):
            status, body = await _post(session, f"{experiment}/{path}", data)
            assert (status, body["field"]) == (400, field), (path, data, body)
        async with session.get(experiment) as response:
            assert (await response.json())["state"] == before


def test_refused_ranges_cover_the_whole_link_local_blocks() -> None:
    for text in ("169.254.0.0", "169.254.255.255", "fe80::", "febf:ffff::1"):
        assert refusal(ipaddress.ip_address(text), allow_link_local=False) is not None, text
    for text in ("169.253.255.255", "169.255.0.0", "fec0::1", "127.0.0.1", "10.0.0.1", "::1"):
        assert refusal(ipaddress.ip_address(text), allow_link_local=False) is None, text
    assert refusal(ipaddress.ip_address("169.254.169.254"), allow_link_local=True) is None


async def test_a_name_that_does_not_resolve_is_refused(make_gateway: Any, upstream_a: Process) -> None:
    async with (
        make_gateway(gateway_config([f"127.0.0.1:{upstream_a.port}"])) as gw,
        aiohttp.ClientSession() as session,
    ):
        url = f"http://127.0.0.1:{gw.admin_port}/admin/clusters/up/endpoints"
        # RFC 2606 reserves .invalid: no resolver answers for it.
        status, body = await asyncio.wait_for(_post(session, url, b'{"address": "nothing.invalid:80"}'), 10)
        assert (status, body["field"]) == (400, "address")
        assert body["error"] == "nothing.invalid does not resolve"
