"""`turnout monitor report MODEL`: a model's monitoring report from a running gateway's admin API,
as JSON, Markdown or HTML (feature histograms, reference against current).

`turnout monitor baseline MODEL --from 2h`: the model's input rows of the last two hours, as the
gateway kept them, become its reference in the running gateway at once, and (with `--out`) a file
of rows that the config can name as the model's `reference:` so that it outlives a reload."""

from __future__ import annotations

import argparse
import csv
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
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
    baseline = actions.add_parser(
        "baseline",
        help="make a model's recent live traffic its reference (POST /admin/monitoring/MODEL/baseline)",
    )
    baseline.add_argument("model", help="the model's name, as routes see it")
    baseline.add_argument("--from", dest="since", required=True, help="how far back: 2h, 30m, 90s")
    baseline.add_argument(
        "--out",
        default=None,
        help="also write the rows to this file (.csv or .npy) for the config's reference:",
    )
    baseline.add_argument(
        "--no-apply", action="store_true", help="only write --out; the running gateway keeps its reference"
    )
    baseline.add_argument(
        "--admin", default=DEFAULT_ADMIN, help=f"the admin API's URL (default {DEFAULT_ADMIN})"
    )
    baseline.add_argument("--token", default=None, help="the admin token, when the gateway has one")
    baseline.set_defaults(handler=run_monitor_baseline)


class _Failed(Exception):
    """An admin call that did not answer 200, with the line to print."""


def _call(args: argparse.Namespace, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET (or, with `body`, POST) an admin path; the JSON answer, or `_Failed` saying why not."""
    url = f"{args.admin.rstrip('/')}{path}"
    headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["content-type"] = "application/json"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=data, headers=headers), timeout=TIMEOUT_S
        ) as answer:
            return orjson.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:
            detail = refused.read().decode(errors="replace")
        raise _Failed(f"turnout monitor: {url} answered {refused.code}: {detail.strip()}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Failed(f"turnout monitor: cannot reach {url}: {exc}") from None


def _model_path(model: str) -> str:
    return f"/admin/monitoring/{urllib.parse.quote(model, safe='')}"


def run_monitor_report(args: argparse.Namespace) -> int:
    try:
        report = _call(args, _model_path(args.model))
    except _Failed as failed:
        print(failed, file=sys.stderr)
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


def run_monitor_baseline(args: argparse.Namespace) -> int:
    try:
        since = str(args.since)
        if args.out:
            query = urllib.parse.urlencode({"from": since})
            kept = _call(args, f"{_model_path(args.model)}/rows?{query}")
            if not kept["rows"]:
                print(
                    f"turnout monitor: no rows of {args.model!r} were kept from the last {since}",
                    file=sys.stderr,
                )
                return 1
            _write_rows(Path(args.out), np.asarray(kept["rows"], dtype=np.float64), kept["names"])
            print(f"{len(kept['rows'])} rows (of {kept['seen']} seen) written to {args.out}")
        if not args.no_apply:
            applied = _call(args, f"{_model_path(args.model)}/baseline", {"from": since})
            for reference in applied["references"]:
                print(f"{args.model}: now measured against {reference['source']}")
    except _Failed as failed:
        print(failed, file=sys.stderr)
        return 1
    return 0


def _write_rows(path: Path, rows: np.ndarray, names: list[str] | None) -> None:
    """Rows as the monitor reads a reference: .npy as it is, else CSV with a header of names."""
    if path.suffix.lower() == ".npy":
        np.save(path, rows)
        return
    header = names if names is not None else [f"feature_{j}" for j in range(rows.shape[1])]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows.tolist())
