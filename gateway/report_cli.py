"""`turnout report EXPERIMENT`: an experiment's analysis from its event store, offline or while the
gateway runs (the store is shared: SQLite in WAL mode, or Redis)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from experiments.config import AbConfig, CanaryConfig
from experiments.splits import build_split
from experiments.store import EVENT_KINDS, ParquetUnavailable, export_events, open_store
from experiments.sync import SplitStateSync
from gateway.config import ConfigError, GatewayConfig
from gateway.loading import load_gateway_config

# The project's root, where `make demo` runs: the demo config lives under it, and the demo gateway
# writes its relative SQLite store there. Both are looked up there, not in the working directory,
# so that the default works from anywhere in a source checkout.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "examples" / "demo.yaml"


def add_report_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser("report", help="analyse an experiment from its event store")
    report.add_argument("experiment", help="the experiment's name, as in the config")
    report.add_argument(
        "--config",
        default=None,
        help="the gateway config that defines it (default: the demo's, config/examples/demo.yaml)",
    )
    report.add_argument(
        "--store",
        default=None,
        help="the event store: redis://host:port/db or a SQLite file (default: the config's)",
    )
    report.add_argument("--format", choices=["json", "md", "html"], default="json")
    report.add_argument("--out", default=None, help="write the report to this file instead of stdout")
    report.set_defaults(handler=run_report)


def add_export_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser("export", help="write an experiment's raw events to CSV or Parquet")
    export.add_argument("experiment", help="the experiment's name, as in the config")
    export.add_argument("--kind", choices=sorted(EVENT_KINDS), default="exposures", help="which events")
    export.add_argument(
        "--format", choices=["csv", "parquet"], default="csv", help="parquet needs pyarrow installed"
    )
    export.add_argument("--out", required=True, help="the file to write")
    export.add_argument("--config", default=None, help="default: the demo's, config/examples/demo.yaml")
    export.add_argument("--store", default=None, help="redis://... or a SQLite file (default: the config's)")
    export.set_defaults(handler=run_export)


def _store_location(args: argparse.Namespace) -> tuple[GatewayConfig, str | None, str] | None:
    demo = args.config is None
    if demo and not DEFAULT_CONFIG.exists():
        print(
            f"turnout {args.command}: pass --config, the gateway config that defines the experiment "
            "(the demo's config comes with a source checkout only)",
            file=sys.stderr,
        )
        return None
    if demo:
        args.config = str(DEFAULT_CONFIG)
    try:
        config = load_gateway_config(Path(args.config), build=False)  # reads it only: nothing to build
    except ConfigError as err:
        print(err, file=sys.stderr)
        return None
    if args.store is None:
        sqlite_path = config.state.sqlite_path
        if demo and sqlite_path and not Path(sqlite_path).is_absolute():
            sqlite_path = str(PROJECT_ROOT / sqlite_path)  # where the demo gateway, run there, writes it
        return config, config.state.redis_url, sqlite_path
    if args.store.startswith(("redis://", "rediss://")):
        return config, args.store, ""
    return config, None, args.store.removeprefix("sqlite://")


def run_export(args: argparse.Namespace) -> int:
    location = _store_location(args)
    if location is None:
        return 1
    _, redis_url, sqlite_path = location
    if redis_url is None and not Path(sqlite_path).exists():
        print(f"turnout export: no event store at {sqlite_path}", file=sys.stderr)
        return 1

    async def export() -> int:
        store = open_store(redis_url=redis_url, sqlite_path=sqlite_path)
        await store.start()
        try:
            return await export_events(store, args.experiment, args.kind, Path(args.out), args.format)
        finally:
            await store.stop()

    try:
        rows = asyncio.run(export())
    except ParquetUnavailable as exc:
        print(f"turnout export: {exc}", file=sys.stderr)
        return 1
    print(f"{rows} {args.kind} events of {args.experiment} written to {args.out}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    location = _store_location(args)
    if location is None:
        return 1
    config, redis_url, sqlite_path = location
    experiment = config.experiments.get(args.experiment)
    if experiment is None:
        known = ", ".join(sorted(config.experiments)) or "none"
        print(
            f"turnout report: no experiment '{args.experiment}' in {args.config} (known: {known})",
            file=sys.stderr,
        )
        return 1
    if not isinstance(experiment, AbConfig | CanaryConfig):
        print(
            f"turnout report: '{args.experiment}' is a {experiment.kind} experiment; reports cover "
            "A/B tests and canaries",
            file=sys.stderr,
        )
        return 1
    if redis_url is None and not Path(sqlite_path).exists():
        print(f"turnout report: no event store at {sqlite_path} (has the gateway run here?)", file=sys.stderr)
        return 1
    text = asyncio.run(_render(args.experiment, experiment, redis_url, sqlite_path, args.format))
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


async def _render(
    name: str, experiment: AbConfig | CanaryConfig, redis_url: str | None, sqlite_path: str, fmt: str
) -> str:
    from experiments.report import build_report, render

    store = open_store(redis_url=redis_url, sqlite_path=sqlite_path)
    await store.start()
    try:
        split = build_split(name, experiment)
        await SplitStateSync(store, {name: split}).adopt(split, force=True)
        report = await build_report(name, experiment, split, store, now=time.time())
        return str(render(report, fmt))
    finally:
        await store.stop()
