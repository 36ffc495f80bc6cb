"""Every side-by-side benchmark in one run, written up as bench/RESULTS.md (`make bench`).

    python bench/run_all.py [--quick] [--only deployed,deployed-chain,filters,proxy,hotpath,chain,cache,
                                    batching,worker,limiter]
                            [--note TEXT] [--output bench/RESULTS.md] [--save-json FILE]
    python bench/run_all.py --render FILE [--output bench/RESULTS.md]

Runs, one after another, each through its own --json output (the exact commands are in
bench/_suite.py and in the report): turnout as deployed against nginx (POST bodies, two upstreams,
access logs on both; then with the typical chain), each filter's CPU per request in process, the
proxy's best case (direct vs turnout vs nginx at concurrency 32 and 128),
the typical filter chain's overhead, cache-hit latency, batching off/on through turnout vs the
in-process ceiling, inference worker throughput, and rate-limiter decisions per second. It then
rewrites RESULTS.md with the machine, the date, the commands, the figures, and the project's
targets checked against them. A section that fails is reported as failed and the others still run.

--quick shortens every run (a smoke test, marked as such in the report); --only runs some sections
(RESULTS.md then holds only those); --note adds a remark (e.g. that the machine was busy);
--save-json keeps the collected results, and --render writes RESULTS.md again from such a file
without measuring. Exit status: 0 when every section succeeded, 1 when one failed, 2 on bad
arguments, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _machine import describe_machine, load_average
from _procs import exit_on_termination
from _results_md import render_results
from _suite import ROOT, SECTION_NAMES, SECTIONS, run_section

DEFAULT_OUTPUT = ROOT / "bench" / "RESULTS.md"


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in SECTION_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"sections are some of {','.join(SECTION_NAMES)}; got {text!r}")
    return names


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test of every section")
    parser.add_argument("--only", type=_sections, default=SECTION_NAMES, help="default: every section")
    parser.add_argument("--note", help="a remark printed at the top of RESULTS.md")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default bench/RESULTS.md")
    parser.add_argument("--save-json", type=Path, metavar="FILE", help="also save the collected results")
    parser.add_argument("--render", type=Path, metavar="FILE", help="only render FILE (from --save-json)")
    return parser.parse_args(argv)


def displayed_command(argv: Sequence[str]) -> str:
    """The command as RESULTS.md shows it: exact, except that a --note's text (printed in full just
    below it) is not repeated, and an absolute path given to --save-json or --output is shown as
    FILE (a path of the machine that ran it means nothing to a reader)."""
    shown: list[str] = []
    pending = ""  # the option whose value comes next
    for arg in argv:
        if pending:
            shown.append(_shown_value(pending, arg))
            pending = ""
            continue
        name, equals, value = arg.partition("=")
        if name in _PATH_OPTIONS or name == "--note":
            if equals:
                shown.append(f"{name} {_shown_value(name, value)}")
            else:
                shown.append(name)
                pending = name
        else:
            shown.append(shlex.quote(arg))
    return " ".join(["python", "bench/run_all.py", *shown])


_PATH_OPTIONS = frozenset({"--save-json", "--output"})


def _shown_value(option: str, value: str) -> str:
    if option == "--note":
        return "'(the note below)'"
    return "FILE" if Path(value).is_absolute() else shlex.quote(value)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def collect(only: Sequence[str], quick: bool, note: str | None, command: str) -> dict[str, Any]:
    """Run the chosen sections in the suite's order; the record RESULTS.md is rendered from."""
    run: dict[str, Any] = {
        "command": command,
        "started": _now(),
        "quick": quick,
        "note": note,
        "machine": describe_machine(),
        "load_before": load_average(),
        "sections": {},
    }
    for section in SECTIONS:
        if section.name not in only:
            continue
        print(f"== {section.name}: {section.title}", file=sys.stderr, flush=True)
        record = run_section(section, quick)
        run["sections"][section.name] = record
        outcome = f"failed: {record['error']}" if "error" in record else "done"
        print(f"== {section.name}: {outcome} ({record['seconds']} s)", file=sys.stderr, flush=True)
    run["load_after"] = load_average()
    run["finished"] = _now()
    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.render is not None:
        run = json.loads(args.render.read_text())
    else:
        exit_on_termination()
        command = displayed_command(sys.argv[1:] if argv is None else argv)
        try:
            run = collect(args.only, args.quick, args.note, command)
        except KeyboardInterrupt:
            print("interrupted: RESULTS.md left as it was", file=sys.stderr)
            return 130
        if args.save_json is not None:
            args.save_json.write_text(json.dumps(run, indent=2) + "\n")
    args.output.write_text(render_results(run))
    print(f"wrote {args.output}", file=sys.stderr)
    failed = [name for name, record in run["sections"].items() if "error" in record]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
