from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence

import pytest

from routing.balancers.round_robin import RoundRobinFactory
from routing.discovery.dns import DnsDiscovery
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint

DEADLINE_S = 3.0
PORT = 9555


async def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


def resolved(cluster: EndpointSet) -> set[str]:
    return {ep.address for ep in cluster.endpoints if ep.hostname == "localhost"}


async def test_localhost_is_resolved_and_joined_to_static_endpoints() -> None:
    static = Endpoint(host="10.5.0.1", port=PORT)
    cluster = EndpointSet("c", [static], RoundRobinFactory())
    async with DnsDiscovery(cluster, [("localhost", PORT, 3)], refresh_interval=60.0) as discovery:
        addresses = resolved(cluster)
        assert f"127.0.0.1:{PORT}" in addresses
        assert addresses <= {f"127.0.0.1:{PORT}", f"[::1]:{PORT}"}
        assert cluster.get(static.address) is static
        assert all(ep.weight == 3 for ep in cluster.endpoints if ep.hostname == "localhost")
        assert discovery.failures == 0


async def test_ipv4_only_family() -> None:
    cluster = EndpointSet("c", [], RoundRobinFactory())
    discovery = DnsDiscovery(cluster, [("localhost", PORT, 1)], family=socket.AF_INET)
    await discovery.refresh()
    assert resolved(cluster) == {f"127.0.0.1:{PORT}"}


async def test_periodic_refresh_keeps_endpoint_state() -> None:
    cluster = EndpointSet("c", [], RoundRobinFactory())
    async with DnsDiscovery(cluster, [("localhost", PORT, 1)], refresh_interval=0.01) as discovery:
        endpoint = cluster.get(f"127.0.0.1:{PORT}")
        assert endpoint is not None
        cluster.on_start(endpoint)
        rounds = discovery.resolutions
        await eventually(lambda: discovery.resolutions >= rounds + 3)
        assert cluster.get(f"127.0.0.1:{PORT}") is endpoint
        assert endpoint.inflight == 1


async def test_failed_resolution_keeps_last_known_addresses() -> None:
    failing = False
    cluster = EndpointSet("c", [], RoundRobinFactory())

    async def flaky(host: str, port: int) -> Sequence[str]:
        # The real system resolution, made to fail on demand: there is no DNS server here to break.
        if failing:
            raise socket.gaierror(socket.EAI_AGAIN, "temporary failure in name resolution")
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=socket.AF_INET)
        return [str(info[4][0]) for info in infos]

    discovery = DnsDiscovery(cluster, [("localhost", PORT, 1)], refresh_interval=0.01, resolver=flaky)
    async with discovery:
        assert resolved(cluster) == {f"127.0.0.1:{PORT}"}
        failing = True
        await eventually(lambda: discovery.failures >= 3)
        assert resolved(cluster) == {f"127.0.0.1:{PORT}"}


async def test_addresses_that_disappear_are_removed() -> None:
    answers = [["127.0.0.1", "127.0.0.2"]]

    async def scripted(host: str, port: int) -> Sequence[str]:
        return answers[-1]

    cluster = EndpointSet("c", [Endpoint(host="10.5.0.9", port=1)], RoundRobinFactory())
    discovery = DnsDiscovery(cluster, [("models.internal", PORT, 1)], resolver=scripted)
    await discovery.refresh()
    assert {ep.address for ep in cluster.endpoints} == {
        "10.5.0.9:1",
        f"127.0.0.1:{PORT}",
        f"127.0.0.2:{PORT}",
    }
    answers.append(["127.0.0.2"])
    await discovery.refresh()
    assert {ep.address for ep in cluster.endpoints} == {"10.5.0.9:1", f"127.0.0.2:{PORT}"}


async def test_slow_resolver_times_out_as_a_failure() -> None:
    async def hanging(host: str, port: int) -> Sequence[str]:
        await asyncio.Event().wait()  # never set: a resolver that does not answer
        return []

    cluster = EndpointSet("c", [], RoundRobinFactory())
    discovery = DnsDiscovery(cluster, [("localhost", PORT, 1)], resolve_timeout=0.02, resolver=hanging)
    await discovery.refresh()
    assert discovery.failures == 1
    assert cluster.endpoints == ()


def test_invalid_settings_are_refused() -> None:
    cluster = EndpointSet("c", [], RoundRobinFactory())
    with pytest.raises(ValueError, match="invalid hostname"):
        DnsDiscovery(cluster, [("bad..name", PORT, 1)])
    with pytest.raises(ValueError, match="above zero"):
        DnsDiscovery(cluster, [("localhost", PORT, 1)], refresh_interval=0)
