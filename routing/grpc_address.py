"""Where an endpoint serves gRPC: its address with the port replaced by the entry's `grpc_port`.

An endpoint entry may name a `grpc_port` beside its HTTP address (`{address: "api.local:9103",
grpc_port: 9104}`): gRPC calls and gRPC health checks go to the same host on that port. The host
kept is the one the data path picked: an IP address as written, or, for a DNS name, each address
the name resolved to (`Endpoint.hostname` remembers the name), so gRPC calls are balanced over the
resolved addresses as HTTP requests are. An IPv6 host gets its brackets (`[::1]:9104`).

The data path knows a picked endpoint by its address text only ("10.0.0.5:9103"), so
`GrpcAddresses` answers by address: an IP entry directly, a resolved one by asking for the endpoint
behind the address (its cluster's endpoint set) and the name it came from; that answer is kept for
the next call. If one address is reached through two entries with different `grpc_port`s, the first
answer found is kept (they name the same server, so they cannot both be right).

Endpoints that come after the config, added through the admin API with a `grpc_port` or announced
by a worker pool with a gRPC address, are `added`: their HTTP address -> gRPC address, as is. They
change while the config stays (`GrpcAddresses.set_added`, `gateway/grpc_ports.py`), and a config
entry for the same address gives way to them (the later word).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import TypeVar, overload

from routing.endpoints import Endpoint

GrpcPorts = Mapping[tuple[str, int], int]
"""(host as written, lower-case without brackets: an IP address or a DNS name; HTTP port) ->
gRPC port, for the entries that name one."""

_T = TypeVar("_T")
# Resolved addresses remembered before the memory starts over: far more than a cluster has at once,
# so only a name whose answers keep changing (addresses come and go for good) ever fills it.
_REMEMBERED = 4096


def join_host_port(host: str, port: int) -> str:
    """`host:port`, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def grpc_addresses(
    ports: GrpcPorts, endpoint: Callable[[str], Endpoint | None], added: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The data path's map: a plain dict where every entry naming a `grpc_port` is an IP address
    (its C `get` costs nothing to speak of), a `GrpcAddresses` where a name must be resolved."""
    if any(not _is_ip(host) for host, _ in ports):
        return GrpcAddresses(ports, endpoint, added)
    static = {join_host_port(host, port): join_host_port(host, grpc) for (host, port), grpc in ports.items()}
    return static | dict(added or {})


class GrpcAddresses(dict[str, str]):
    """An endpoint's gRPC address by its HTTP address ("host:port"). A known endpoint without a
    `grpc_port` is answered its own address; an address no endpoint set holds, `default`. Built
    once per config; read for every gRPC call."""

    __slots__ = ("_by_name", "_configured", "_endpoint", "_static")

    def __init__(
        self,
        ports: GrpcPorts,
        endpoint: Callable[[str], Endpoint | None],
        added: Mapping[str, str] | None = None,
    ) -> None:
        """`endpoint`: the endpoint behind an address, where one is known (for resolved names);
        `added`: the endpoints that came after the config (see the module docstring)."""
        self._by_name: dict[tuple[str, int], int] = {}
        self._configured: dict[str, str] = {}
        self._endpoint = endpoint
        for (host, port), grpc_port in ports.items():
            if _is_ip(host):
                self._configured[join_host_port(host, port)] = join_host_port(host, grpc_port)
            else:
                self._by_name[(host, port)] = grpc_port
        self._static = self._configured | dict(added or {})
        super().__init__(self._static)

    def set_added(self, added: Mapping[str, str]) -> None:
        """The endpoints added since the config, replacing those set before; what was remembered
        of resolved names is asked again."""
        self._static = self._configured | dict(added)
        self.clear()
        self.update(self._static)

    def of(self, endpoint: Endpoint) -> str:
        """The endpoint's gRPC address: its own address where its entry names no `grpc_port`."""
        found = dict.get(self, endpoint.address)
        if found is not None:
            return found
        hostname = endpoint.hostname
        grpc_port = self._by_name.get((hostname, endpoint.port)) if hostname is not None else None
        return endpoint.address if grpc_port is None else join_host_port(endpoint.host, grpc_port)

    @overload
    def get(self, key: str, default: None = None, /) -> str | None: ...
    @overload
    def get(self, key: str, default: str, /) -> str: ...
    @overload
    def get(self, key: str, default: _T, /) -> str | _T: ...
    def get(self, key: str, default: object = None, /) -> object:
        found = dict.get(self, key)
        if found is not None:
            return found
        if not self._by_name:  # only IP entries: the dict is the whole answer
            return default
        endpoint = self._endpoint(key)
        if endpoint is None:  # not (or no longer) in any endpoint set: nothing to remember
            return default
        address = self.of(endpoint)
        if len(self) >= _REMEMBERED:
            self.clear()
            self.update(self._static)
        self[key] = address  # an address without a gRPC port maps to itself: asked once
        return address
