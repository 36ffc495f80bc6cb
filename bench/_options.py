"""The proxy benchmark's command line, parsed and checked into one frozen Options."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

import _nginx
from _chains import CHAIN_NAMES
from _scenario import SCENARIO_NAMES

from gateway.core.config_types import parse_duration

# turnout-py: turnout with its data path run from source (TURNOUT_PURE_PYTHON), beside the compiled one.
TARGET_NAMES = ("direct", "turnout", "turnout-py", "nginx")
DEFAULT_TARGETS = ("direct", "turnout", "nginx")


@dataclass(frozen=True, slots=True)
class Options:
    concurrency: tuple[int, ...]
    duration_s: float
    warmup_s: float
    targets: tuple[str, ...]
    loadgen: str  # "auto", "wrk" or "python"
    upstream: str  # "auto", "nginx" or "python"
    turnout: str | None  # the turnout executable; None: find it
    access_log: bool
    json: bool
    chain: str  # one of CHAIN_NAMES: the filters on turnout's route (see _chains)
    compare_chain: bool  # also run turnout with no filters, beside the chain
    scenario: str = "best"  # one of SCENARIO_NAMES: what every request is (see _scenario)


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return tuple(dict.fromkeys(values))


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _targets(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names or any(name not in TARGET_NAMES for name in names):
        raise argparse.ArgumentTypeError(f"targets are some of {','.join(TARGET_NAMES)}; got {text!r}")
    return names


def parse_options(argv: Sequence[str] | None, description: str | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=_positive_ints, default=(32, 128), help="default 32,128")
    parser.add_argument("--duration", type=_duration, default=10.0, help="measured time per run (10s)")
    parser.add_argument("--warmup", type=_duration, default=2.0, help="discarded warm-up per run (2s)")
    parser.add_argument(
        "--targets",
        type=_targets,
        default=DEFAULT_TARGETS,
        help="default direct,turnout,nginx (also: turnout-py)",
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk when installed, else the Python load generator",
    )
    parser.add_argument(
        "--upstream",
        choices=("auto", "nginx", "python"),
        default="auto",
        help="auto: nginx when installed, else bench/upstream.py",
    )
    parser.add_argument(
        "--turnout",
        metavar="COMMAND",
        help="the turnout executable (default: the one beside this Python, else on PATH)",
    )
    parser.add_argument("--access-log", action="store_true", help="proxies write an access log to a file")
    parser.add_argument("--json", action="store_true", help="last stdout line: one JSON summary object")
    parser.add_argument(
        "--chain",
        choices=CHAIN_NAMES,
        help="filters on turnout's route (default none; typical with --compare-chain)",
    )
    parser.add_argument(
        "--compare-chain",
        action="store_true",
        help="measure turnout with no filters and with --chain side by side, and the chain's cost",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIO_NAMES,
        default="best",
        help="best: GET, one upstream; deployed: POST OIP v2 bodies, two upstreams, access logs (wrk)",
    )
    args = parser.parse_args(argv)
    if args.scenario == "deployed" and (args.loadgen == "python" or shutil.which("wrk") is None):
        parser.error("--scenario deployed sends its requests from a wrk script: it needs wrk")
    chain = args.chain or ("typical" if args.compare_chain else "none")
    if args.compare_chain and chain == "none":
        parser.error("--compare-chain compares a chain with none: give --chain typical or cache-hit")
    if args.compare_chain and "turnout" not in args.targets:
        parser.error("--compare-chain measures turnout: include turnout in --targets")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    if args.loadgen == "wrk" and shutil.which("wrk") is None:
        parser.error("--loadgen wrk: wrk is not installed")
    if args.upstream == "nginx" and _nginx.nginx_path() is None:
        parser.error("--upstream nginx: nginx is not installed")
    return Options(
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
        targets=args.targets,
        loadgen=args.loadgen,
        upstream=args.upstream,
        turnout=args.turnout,
        # The deployed scenario logs on both proxies, as deployed proxies do.
        access_log=args.access_log or args.scenario == "deployed",
        json=args.json,
        chain=chain,
        compare_chain=args.compare_chain,
        scenario=args.scenario,
    )
