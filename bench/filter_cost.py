"""The CPU cost of each built-in filter of the typical chain, and of the access log, per request.

    python bench/filter_cost.py [--scenario best|deployed] [--requests 4000] [--rounds 9]
                                [--in-flight 32] [--json]

As bench/hotpath.py does, a real gateway runs in this process with its client and upstream
connections over fake transports, so what is timed is the Python-side CPU of whole requests. The
route is measured with the typical chain (bench/_chains.py) built up one filter at a time:

    none -> auth_jwt -> auth_jwt + rate_limit -> auth_jwt + rate_limit + cache (a miss every time)

(`--chain null`: filters of the same shape that do no work of their own, bench/_null_filters.py, so
the rows show what the data path itself does per filter.)

and once more with no filters and the access log on (to a file). Each filter's cost is the
difference from the row before it. Every request carries the chain's token and a query string of
its own (so the cache misses), in every row, so the rows differ only by their filters. The requests
are those of a `bench/proxy.py` scenario (bench/_scenario.py): `best` sends GET / with no body,
`deployed` POSTs its OIP v2 JSON bodies of about 100 bytes and 16 KB in turn, so the cache keys a
body (with `--chain typical-raw-body`, as sent rather than canonical JSON). The loop is
turned until each batch has reached the upstreams, and again until its answers are relayed, so a
filter that hops to a task still finishes.

As `bench/proxy.py` runs them: with `--scenario deployed` every row writes the access log, as the
deployed gateway does (the extra row is then the one without it); and a route with the cache is
warmed up until the cache holds its most entries, so each measured miss also evicts the oldest
answer, as in a run of seconds against a real gateway (a cache that is still filling costs less).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _chains import build_chain  # noqa: E402 - after the path is set
from _null_filters import NULL_CHAIN  # noqa: E402
from _procs import free_port  # noqa: E402
from _scenario import SCENARIO_NAMES, Scenario, build_scenario  # noqa: E402
from _turnout import turnout_config  # noqa: E402
from hotpath import ANSWER, FakeTransport  # noqa: E402

from plugins.cache.config import CacheConfig  # noqa: E402

# Loop turns allowed for a batch of requests to reach the upstreams, or its answers the clients: a
# filter's task needs one or two; thousands mean a request is stuck, not slow.
MAX_SETTLE_TURNS = 10_000
WARMUP_ROUNDS = 60
# The cache's default max_entries (plugins/cache/config.py): a route with the cache is warmed up
# beyond it, so that the measured stores evict as a long run's do.
CACHE_ENTRIES = CacheConfig.model_fields["max_entries"].default
# --unique-bodies: the first value of each body, rewritten per request to one of 9,000 others (1.000
# to 9.999, five characters as 0.125 is): a body comes again only after 9,000 of its kind, far beyond
# what the cache remembers of recent bodies (4 MiB: about 130 of the 16 KB bodies and their forms).
_FIRST_VALUE = b"0.125"
UNIQUE_VALUES = 9000


def _requests(scenario: Scenario, token: str, unique_bodies: bool = False) -> Callable[[int], bytes]:
    """The request numbered ``n`` of ``scenario``, whole, with the chain's token and its own query;
    with ``unique_bodies`` each body's first value is rewritten so that no recent body comes again."""
    bodies = scenario.bodies or (b"",)
    heads = [
        b"%s %s?n=%%d HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n%s\r\n"
        % (
            scenario.method.encode(),
            scenario.path.encode(),
            token.encode(),
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body) if body else b"",
        )
        for body in bodies
    ]

    def request(n: int) -> bytes:
        which = n % len(bodies)
        body = bodies[which]
        if unique_bodies and body:
            # The scenario's first value is 0.125; the same five characters, so Content-Length holds.
            body = body.replace(_FIRST_VALUE, b"%.3f" % (1 + n // len(bodies) % UNIQUE_VALUES / 1000), 1)
        return heads[which] % n + body

    return request


async def _measure(
    filters: Sequence[Mapping[str, Any]],
    access_log: bool,
    request: Callable[[int], bytes],
    requests: int,
    rounds: int,
    in_flight: int,
) -> float:
    """Best µs per request of the route with ``filters``."""
    from gateway.http.listener import HttpConnection
    from gateway.http.upstream import UpstreamConnection
    from gateway.loading import load_gateway_config
    from gateway.server import Gateway

    with tempfile.TemporaryDirectory() as scratch:
        config_path = Path(scratch) / "filters.yaml"
        log_path = Path(scratch) / "access.log" if access_log else None
        config_path.write_text(turnout_config(free_port(), free_port(), 9, log_path, filters))
        gateway = Gateway(load_gateway_config(config_path))
        await gateway.start()
        try:
            assert gateway.listener is not None
            clients = []
            for _ in range(in_flight):
                client = HttpConnection(gateway.listener)
                transport = FakeTransport()
                client.connection_made(transport)  # type: ignore[arg-type]
                clients.append((client, transport))
            cluster = gateway.runtime.clusters["up"]
            pool = cluster.pool_for(cluster.endpoints.eligible[0])
            upstreams = []
            for _ in range(in_flight):
                upstream = UpstreamConnection(pool)
                upstream.connection_made(FakeTransport())  # type: ignore[arg-type]
                pool._open += 1
                pool._all.add(upstream)
                pool.put_idle(upstream)
                upstreams.append(upstream)
            counter = 0

            async def settle(done: Callable[[], bool]) -> None:
                for _ in range(MAX_SETTLE_TURNS):
                    if done():
                        return
                    await asyncio.sleep(0)
                raise RuntimeError("requests did not complete through the fake transports")

            async def one_round() -> None:
                nonlocal counter
                for client, _ in clients:
                    counter += 1
                    client.data_received(request(counter))
                await settle(lambda: not pool._idle)  # every request has reached its upstream
                for upstream in upstreams:
                    upstream.data_received(ANSWER)
                await settle(lambda: len(pool._idle) == in_flight)  # every answer has been relayed

            warmup = WARMUP_ROUNDS
            if any("cache" in f for f in filters):  # until every store evicts
                warmup = max(warmup, CACHE_ENTRIES // in_flight + 2)
            for _ in range(warmup):
                await one_round()
            if sum(transport.written for _, transport in clients) == 0 or len(pool._idle) != in_flight:
                raise RuntimeError("requests did not complete through the fake transports")
            per_round = max(1, requests // in_flight)
            best = float("inf")
            for _ in range(rounds):
                began = time.process_time()
                for _ in range(per_round):
                    await one_round()
                best = min(best, (time.process_time() - began) / (per_round * in_flight))
            return best * 1e6
        finally:
            await gateway.shutdown(0.1)


async def _all_rows(
    scenario: Scenario, chain_name: str, requests: int, rounds: int, in_flight: int, unique_bodies: bool
) -> dict[str, float]:
    chain = build_chain("typical" if chain_name == "null" else chain_name)
    request = _requests(scenario, chain.headers[0][1].removeprefix("Bearer "), unique_bodies)
    filters: Sequence[Mapping[str, Any]] = chain.filters
    names = ["none", *(next(iter(f)) for f in filters)]
    if chain_name == "null":  # the same requests, the typical chain's shape without its work
        filters = NULL_CHAIN
        names = ["none", "null_auth", "null_limit", "null_store"]
    logged = scenario.access_log  # the deployed scenario logs every request, as bench/proxy.py's does
    rows: dict[str, float] = {}
    for count, name in enumerate(names):
        rows[name] = await _measure(filters[:count], logged, request, requests, rounds, in_flight)
    # The other way round: the log's cost is the difference from the row without filters.
    rows["access_log" if not logged else "no_access_log"] = await _measure(
        (), not logged, request, requests, rounds, in_flight
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=SCENARIO_NAMES, default="best", help="the requests (best)")
    parser.add_argument(
        "--chain",
        choices=("typical", "typical-raw-body", "null"),
        default="typical",
        help="the filters (typical); null: filters of the typical chain's shape that do nothing, "
        "for the data path's own cost per filter (bench/_null_filters.py)",
    )
    parser.add_argument("--requests", type=int, default=4000, help="requests per round (4000)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds; the best is kept (9)")
    parser.add_argument("--in-flight", type=int, default=32, help="requests in flight at once (32)")
    parser.add_argument(
        "--unique-bodies",
        action="store_true",
        help="no body comes again (the scenario's bodies repeat: a cache remembers what it read of them)",
    )
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    import uvloop

    from gateway.core.native import data_path_mode

    scenario = build_scenario(args.scenario)
    rows = uvloop.run(
        _all_rows(scenario, args.chain, args.requests, args.rounds, args.in_flight, args.unique_bodies)
    )
    bodies = "; every body unique" if args.unique_bodies else ""
    print(f"{scenario.name} scenario: {scenario.description}; chain {args.chain}{bodies}")
    print(f"CPU µs per request in process (data path: {data_path_mode()}), best of {args.rounds} rounds:")
    previous = rows["none"]
    logged = "access_log" not in rows
    label = "no filters, logged:" if logged else "no filters:"
    print(f"  {label:<22} {previous:7.2f}")
    for name in [n for n in rows if n not in ("none", "access_log", "no_access_log")]:
        print(f"  + {name:<19} {rows[name]:7.2f}  (the filter: {rows[name] - previous:+.2f})")
        previous = rows[name]
    if logged:
        unlogged = rows["no_access_log"]
        print(f"  no filters, no log     {unlogged:7.2f}  (the log: {rows['none'] - unlogged:+.2f})")
    else:
        log_row = rows["access_log"]
        print(f"  access log, no filters {log_row:7.2f}  (the log: {log_row - rows['none']:+.2f})")
    if args.json:
        print(
            json.dumps(
                {
                    "data_path": data_path_mode(),
                    "scenario": scenario.name,
                    "chain": args.chain,
                    "unique_bodies": args.unique_bodies,
                    "us_per_request": rows,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
