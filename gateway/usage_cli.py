"""`turnout usage`: token usage of OpenAI routes from the event store, for billing.

    turnout usage --since 24h --by tenant,model --format csv
    turnout usage --config gateway.yaml --format json     # the config's event store
    turnout usage --redis redis://10.0.0.9:6379/0         # the replicas' shared Redis

Prints one row per distinct value of the `--by` columns (tenant, principal, model, route), with the
requests, prompt tokens and completion tokens recorded since then.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import orjson
from redis.exceptions import RedisError

from gateway.core.config_types import parse_duration
from gateway.usage_ledger import COLUMNS, usage_rows

_DAY = 86400.0
_COUNTS = ("requests", "prompt_tokens", "completion_tokens")


def add_usage_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    usage = commands.add_parser("usage", help="token usage of OpenAI routes, per tenant, model, ...")
    where = usage.add_mutually_exclusive_group()
    where.add_argument(
        "--config", default=None, help="the gateway config whose event store to read (SQLite or Redis)"
    )
    where.add_argument("--store", default=None, help="the SQLite event store (default: var/turnout.db)")
    where.add_argument("--redis", default=None, help="the Redis of state.backend redis: redis://host:port/db")
    usage.add_argument("--since", default="24h", help="how far back: 90m, 24h, 7d (default 24h)")
    usage.add_argument(
        "--by", default="tenant,model", help=f"columns to group by, comma-separated: {','.join(COLUMNS)}"
    )
    usage.add_argument("--format", choices=["table", "csv", "json"], default="table")
    usage.set_defaults(handler=run_usage)


def since_seconds(text: str) -> float:
    """A duration as the config writes them, or whole days (`7d`)."""
    if text.endswith("d") and text[:-1].replace(".", "", 1).isdigit():
        return float(text[:-1]) * _DAY
    return parse_duration(text)


def _source(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """The SQLite file or the Redis URL to read."""
    if args.redis is not None:
        return None, args.redis
    if args.store is not None:
        return Path(args.store), None
    if args.config is not None:
        from gateway.loading import load_gateway_config

        state = load_gateway_config(Path(args.config)).state
        return (None, state.redis_url) if state.redis_url else (Path(state.sqlite_path), None)
    return Path("var/turnout.db"), None


def run_usage(args: argparse.Namespace) -> int:
    by = tuple(part.strip() for part in args.by.split(",") if part.strip())
    try:
        since = since_seconds(args.since)
        path, redis_url = _source(args)
        rows = usage_rows(since, by, path=path, redis_url=redis_url)
    except ValueError as exc:
        print(f"turnout usage: {exc}", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"turnout usage: cannot read usage from Redis: {exc}", file=sys.stderr)
        return 1
    write_rows(rows, by or COLUMNS, args.format)
    return 0


def write_rows(rows: list[dict[str, Any]], columns: tuple[str, ...], form: str) -> None:
    if form == "json":
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    header = (*columns, *_COUNTS)
    if form == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([row[name] for name in header] for row in rows)
        return
    table = [header, *([str(row[name]) for name in header] for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
