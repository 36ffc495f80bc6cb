"""config/examples/secure.yaml does what its comments promise (ports moved to free ones)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.support.processes import ROOT, Process, free_port


def _secure_config_text(upstream_a: Process, upstream_b: Process) -> str:
    """The example's text with free ports (edited as text: YAML 1.1 loaders read the key `on` as true)."""
    port, admin = free_port(), free_port()
    text = (ROOT / "config" / "examples" / "secure.yaml").read_text()
    text = text.replace("port: 8080", f"port: {port}").replace("port: 9901", f"port: {admin}")
    text = text.replace("127.0.0.1:9101", f"127.0.0.1:{upstream_a.port}")
    text = text.replace("127.0.0.1:9102", f"127.0.0.1:{upstream_b.port}")
    return text + "\naccess_log: {enabled: false}\n"


async def test_keys_limits_and_cache(upstream_a: Process, upstream_b: Process, tmp_path: Path) -> None:
    from gateway.loading import load_gateway_config
    from gateway.server import Gateway

    text = _secure_config_text(upstream_a, upstream_b)
    path = tmp_path / "secure.yaml"
    path.write_text(text)
    gw = Gateway(load_gateway_config(path), path)
    await gw.start()
    try:
        async with aiohttp.ClientSession() as session:
            await _check(session, f"http://127.0.0.1:{gw.data_port}", upstream_a, upstream_b)
    finally:
        await gw.shutdown(drain_timeout=2.0)


async def _check(session: aiohttp.ClientSession, url: str, upstream_a: Process, upstream_b: Process) -> None:
    async with session.get(f"{url}/hello") as response:
        assert response.status == 401
        assert "Bearer" in response.headers["WWW-Authenticate"]
    async with session.get(f"{url}/hello", headers={"x-api-key": "wrong"}) as response:
        assert response.status == 401

    async def hello() -> tuple[int, str | None]:
        async with session.get(f"{url}/hello", headers={"x-api-key": "demo-key-1"}) as response:
            await response.read()
            return response.status, response.headers.get("Retry-After")

    results = await asyncio.gather(*(hello() for _ in range(6)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 5 + [429]
    assert next(retry for status, retry in results if status == 429) is not None

    body = b'{"features": [1, 2, 3]}'
    headers = {"Authorization": "Bearer demo-key-1", "content-type": "application/json"}
    async with session.post(f"{url}/cached/x", data=body, headers=headers) as response:
        assert response.status == 200
        assert response.headers["x-turnout-cache"] == "miss"
        first = await response.read()
    async with session.get(f"http://127.0.0.1:{upstream_a.port}/count") as response:
        seen_a = (await response.json())["requests"]
    async with session.get(f"http://127.0.0.1:{upstream_b.port}/count") as response:
        seen_b = (await response.json())["requests"]
    # Same JSON, other key order and spacing: the same cache entry.
    async with session.post(f"{url}/cached/x", data=b'{"features":[1,2,3]}', headers=headers) as response:
        assert response.status == 200
        assert response.headers["x-turnout-cache"] == "hit"
        assert await response.read() == first
    for upstream, before in ((upstream_a, seen_a), (upstream_b, seen_b)):
        async with session.get(f"http://127.0.0.1:{upstream.port}/count") as response:
            assert (await response.json())["requests"] == before  # the hit never reached them


async def test_cache_invalidation_through_the_admin_api(
    upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    from gateway.loading import load_gateway_config
    from gateway.server import Gateway

    path = tmp_path / "secure.yaml"
    path.write_text(_secure_config_text(upstream_a, upstream_b))
    gw = Gateway(load_gateway_config(path), path)
    await gw.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{gw.data_port}/cached/y"
            headers = {"x-api-key": "demo-key-1"}
            async with session.post(url, data=b"{}", headers=headers) as response:
                assert response.headers["x-turnout-cache"] == "miss"
            async with session.post(url, data=b"{}", headers=headers) as response:
                assert response.headers["x-turnout-cache"] == "hit"
            admin = f"http://127.0.0.1:{gw.admin_port}/admin/cache/invalidate"
            async with session.post(admin, json={}) as response:
                assert response.status == 200
                assert (await response.json())["removed"] >= 1
            async with session.post(url, data=b"{}", headers=headers) as response:
                assert response.headers["x-turnout-cache"] == "miss"
    finally:
        await gw.shutdown(drain_timeout=2.0)
