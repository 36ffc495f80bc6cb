"""DNS discovery: resolve hostnames periodically and make the endpoint set follow the answers.

Each refresh sets the members to the endpoints that did not come from these names (static IPs, or
endpoints an operator added) plus every address the names resolve to now. Addresses that stay keep
their endpoint objects and so their health and load state. A name that fails to resolve keeps its
last known addresses: a DNS outage must not empty a healthy cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint

_log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host, port) -> addresses; raises OSError when the name does not resolve."""

# Re-resolving every 30 s follows typical DNS TTLs of container platforms without loading the
# resolver; configs that need faster reaction set their own interval.
DEFAULT_REFRESH_INTERVAL_S = 30.0
# A resolver that has not answered in 5 s is treated as failed for this round (glibc's default
# per-try timeout is 5 s too); the last known addresses stay in use.
DEFAULT_RESOLVE_TIMEOUT_S = 5.0


class DnsDiscovery:
    def __init__(
        self,
        endpoint_set: EndpointSet,
        hostnames: Sequence[tuple[str, int, int]],
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL_S,
        *,
        family: socket.AddressFamily = socket.AF_UNSPEC,
        resolve_timeout: float = DEFAULT_RESOLVE_TIMEOUT_S,
        resolver: Resolver | None = None,
    ) -> None:
        """`hostnames` are (host, port, weight); `family` AF_INET keeps only IPv4 answers.
        `resolver` replaces the system resolver (getaddrinfo), e.g. with a service registry."""
        if refresh_interval <= 0 or resolve_timeout <= 0:
            raise ValueError("refresh_interval and resolve_timeout must be above zero")
        for host, _, _ in hostnames:
            _check_hostname(host)
        self._set = endpoint_set
        self._hostnames = tuple((host.lower(), port, weight) for host, port, weight in hostnames)
        self._names = frozenset(host for host, _, _ in self._hostnames)
        self._interval = refresh_interval
        self._family = family
        self._timeout = resolve_timeout
        self._resolver = resolver if resolver is not None else self._getaddrinfo
        self._known: dict[tuple[str, int], tuple[str, ...]] = {}
        self._failing: set[tuple[str, int]] = set()
        self._task: asyncio.Task[None] | None = None
        self.resolutions = 0
        self.failures = 0

    async def start(self) -> None:
        """Resolve once (so the set is populated before traffic), then keep refreshing."""
        if self._task is not None:
            raise RuntimeError("DNS discovery already started")
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name=f"dns-discovery:{self._set.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> DnsDiscovery:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:
                # A bug here must not end discovery for good; the next round tries again.
                _log.exception("DNS discovery round failed for cluster %s", self._set.name)

    async def refresh(self) -> None:
        """Resolve every name now and update the endpoint set."""
        answers = await asyncio.gather(*(self._resolve(host, port) for host, port, _ in self._hostnames))
        endpoints = [ep for ep in self._set.endpoints if ep.hostname not in self._names]
        for (host, port, weight), addresses in zip(self._hostnames, answers, strict=True):
            if addresses is None:
                addresses = self._known.get((host, port), ())
            else:
                self._known[(host, port)] = addresses
            endpoints.extend(Endpoint(host=ip, port=port, weight=weight, hostname=host) for ip in addresses)
        self._set.replace_all(endpoints)

    async def _getaddrinfo(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, family=self._family, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]

    async def _resolve(self, host: str, port: int) -> tuple[str, ...] | None:
        """The addresses of one name in resolver order without repeats, or None when it failed."""
        self.resolutions += 1
        try:
            found = await asyncio.wait_for(self._resolver(host, port), self._timeout)
        except (OSError, TimeoutError) as exc:
            self.failures += 1
            if (host, port) not in self._failing:
                # Said once when a name starts failing, not on every round.
                self._failing.add((host, port))
                _log.warning("cannot resolve %s: %s; keeping its last known addresses", host, exc)
            return None
        if (host, port) in self._failing:
            self._failing.discard((host, port))
            _log.info("%s resolves again", host)
        return tuple(dict.fromkeys(found))


def _check_hostname(host: str) -> None:
    """Refuse at construction a name the resolver would reject with a UnicodeError on every round."""
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise ValueError(f"invalid hostname {host!r}: {exc}") from None
