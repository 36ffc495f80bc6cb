"""`turnout monitor report MODEL`: a model's monitoring report from a running gateway's admin API,
as JSON, Markdown or HTML (feature histograms, reference against current)."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import orjson

from plugins.monitor.render import markdown, page

# The demo's admin listener (config/examples/demo.yaml).
DEFAULT_ADMIN = "http://127.0.0.1:9901"
# An admin call answers at once; a gateway that takes longer is not answering.
TIMEOUT_S = 10.0


def add_monitor_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    monitor = commands.add_parser("monitor", help="model quality from a running gateway")
    actions = monitor.add_subparsers(dest="action", required=True)
    report = actions.add_parser("report", help="a model's drift and outputs (GET /admin/monitoring/MODEL)")
    report.add_argument("model", help="the model's name, as routes see it")
    report.add_argument(
        "--admin", default=DEFAULT_ADMIN, help=f"the admin API's URL (default {DEFAULT_ADMIN})"
    )
    report.add_argument("--token", default=None, help="the admin token, when the gateway has one")
    report.add_argument("--format", choices=["json", "md", "html"], default="json")
    report.add_argument("--out", default=None, help="write the report to this file instead of stdout")
    report.set_defaults(handler=run_monitor_report)


def run_monitor_report(args: argparse.Namespace) -> int:
    url = f"{args.admin.rstrip('/')}/admin/monitoring/{urllib.parse.quote(args.model, safe='')}"
    headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S
        ) as answer:
            report = orjson.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:
            detail = refused.read().decode(errors="replace")
        print(f"turnout monitor: {url} answered {refused.code}: {detail.strip()}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"turnout monitor: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = markdown(report) if args.format == "md" else page(report)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
