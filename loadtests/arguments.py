"""The runner's command line, checked before anything starts: loopback targets only, bounded duration.

    python -m loadtests.run --scenario NAME [--users N] [--duration 20s] [--spawn-rate R]
                            [--host http://127.0.0.1:8080] [--admin http://127.0.0.1:9901]
                            [--grpc-target 127.0.0.1:8011] [--results-dir DIR] [--no-start]
                            [-- LOCUST_OPTIONS ...]

Everything after `--` goes to Locust unchanged (the scenario options such as `--user-pool`), except
options that would point it elsewhere, which are refused.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from loadtests.scenarios import SCENARIOS

LOOPBACK = "127.0.0.1"
DEMO_HOST = "http://127.0.0.1:8080"
DEMO_ADMIN = "http://127.0.0.1:9901"
# Worker A's gRPC port in the demo (it serves risk version 1 and diabetes).
DEMO_GRPC_TARGET = "127.0.0.1:8011"
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"
# Enough concurrent users to keep two small workers busy without swamping a laptop's load generator.
DEFAULT_USERS = 20
DEFAULT_DURATION = "20s"
# Options that would send Locust's traffic to another host than the checked one.
_REDIRECTING_OPTIONS = ("-H", "--host", "--grpc-target", "--master-host", "--master")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


@dataclass(frozen=True, slots=True)
class RunOptions:
    scenario: str
    users: int
    duration_s: int
    spawn_rate: float
    host: str
    admin: str
    admin_token: str
    grpc_target: str
    results_dir: Path
    start_demo: bool
    locust_args: tuple[str, ...]


def parse_duration(text: str) -> int:
    """ "20s", "2m", "1h30m", "1m30s" or plain seconds ("45") -> whole seconds, at least 1."""
    text = text.strip()
    if text.isdigit():
        seconds = int(text)
    else:
        match = _DURATION.match(text)
        if match is None or not any(match.groups()):
            raise ValueError(f"invalid duration {text!r}: use e.g. 20s, 2m, 1m30s")
        hours, minutes, secs = (int(part or 0) for part in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds < 1:
        raise ValueError(f"duration {text!r} must be at least one second")
    return seconds


def require_loopback_url(url: str) -> str:
    """The URL without a trailing slash; ValueError unless it is http(s) on 127.0.0.1."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname != LOOPBACK:
        raise ValueError(f"{url!r}: load tests only target http(s)://{LOOPBACK}")
    return url.rstrip("/")


def require_loopback_target(target: str) -> str:
    """A gRPC `host:port` target; ValueError unless the host is 127.0.0.1 and the port a number."""
    host, _, port = target.rpartition(":")
    if host != LOOPBACK or not port.isdigit():
        raise ValueError(f"{target!r}: the gRPC target must be {LOOPBACK}:PORT")
    return target


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run",
        description="Run one Locust scenario headless against the demo stack (started if needed).",
        epilog="Scenarios: " + "; ".join(f"{s.name}: {s.purpose}" for s in SCENARIOS.values()),
    )
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help="concurrent Locust users")
    parser.add_argument("--duration", default=DEFAULT_DURATION, help="run time, e.g. 20s, 2m (default 20s)")
    parser.add_argument("--spawn-rate", type=float, help="users started per second (default: all at once)")
    parser.add_argument("--host", default=DEMO_HOST, help=f"the gateway (default {DEMO_HOST})")
    parser.add_argument("--admin", default=DEMO_ADMIN, help=f"its admin listener (default {DEMO_ADMIN})")
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("TURNOUT_ADMIN_TOKEN", ""),
        help="bearer token of the admin listener (default $TURNOUT_ADMIN_TOKEN)",
    )
    parser.add_argument("--grpc-target", default=DEMO_GRPC_TARGET, help="worker gRPC port (grpc scenario)")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument(
        "--no-start", action="store_true", help="never start the demo stack; fail if it is not answering"
    )
    parser.add_argument("locust_args", nargs="*", help="after --: options passed to Locust")
    return parser


def parse_options(argv: Sequence[str] | None = None) -> RunOptions:
    """Parse and check; exits with a usage message (status 2) on anything invalid."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.users < 1:
            raise ValueError("--users must be at least 1")
        if args.spawn_rate is not None and args.spawn_rate <= 0:
            raise ValueError("--spawn-rate must be above 0")
        for option in args.locust_args:
            if option.split("=", 1)[0] in _REDIRECTING_OPTIONS:
                raise ValueError(f"{option}: set the target with the runner's own options")
        return RunOptions(
            scenario=args.scenario,
            users=args.users,
            duration_s=parse_duration(args.duration),
            spawn_rate=args.spawn_rate if args.spawn_rate is not None else float(args.users),
            host=require_loopback_url(args.host),
            admin=require_loopback_url(args.admin),
            admin_token=args.admin_token,
            grpc_target=require_loopback_target(args.grpc_target),
            results_dir=args.results_dir,
            start_demo=not args.no_start,
            locust_args=tuple(args.locust_args),
        )
    except ValueError as exc:
        parser.error(str(exc))
