"""The CPU cost of one access-log line on the request path, measured in process.

    python bench/access_log_line.py [--lines 20000] [--rounds 15] [--json]

Each round logs ``--lines`` requests (a filled-in RequestContext, as the proxy's logging phase has
it) to a file in a temporary directory through turnout's AccessLog, closes it (so every line is
written), and divides the time by the lines; the best round is reported (the others lost time to
something else on the machine). The time includes building the line, buffering it and handing full
buffers on, but not the writer thread's write(), which runs off the event loop; the file's size is
checked so a log that dropped lines cannot look fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.access_log import AccessLog  # noqa: E402 - after the path is set
from gateway.core.context import RequestContext  # noqa: E402


def _context(n: int) -> RequestContext:
    ctx = RequestContext("POST", "/v2/models/bench/infer", "", {}, "127.0.0.1", time.monotonic())
    ctx.request_id = f"{n:032x}"
    ctx.route, ctx.cluster, ctx.endpoint = "all", "up", "127.0.0.1:9000"
    ctx.status, ctx.upstream_latency, ctx.bytes_in, ctx.bytes_out = 200, 0.00042, 97, 2
    return ctx


def measure(lines: int, rounds: int) -> float:
    """The best round's µs per line."""
    contexts = [_context(n) for n in range(lines)]
    best = float("inf")
    with tempfile.TemporaryDirectory(prefix="turnout-access-log-") as workdir:
        for round_number in range(rounds):
            path = Path(workdir) / f"access-{round_number}.log"
            log = AccessLog(str(path))
            started = time.perf_counter()
            for ctx in contexts:
                log.log(ctx, 0.0011)
            log.flush()
            elapsed = time.perf_counter() - started
            log.close()
            written = path.read_bytes().count(b"\n")
            if written != lines:
                raise SystemExit(f"round {round_number}: {written} lines written of {lines}")
            best = min(best, elapsed * 1e6 / lines)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=20_000, help="lines per round (20000)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds; the best is kept (15)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    per_line = measure(args.lines, args.rounds)
    if args.json:
        print(json.dumps({"us_per_line": round(per_line, 3), "lines": args.lines, "rounds": args.rounds}))
    else:
        rounds = f"best of {args.rounds} rounds of {args.lines:,} lines"
        print(f"access log: {per_line:.2f} µs per line ({rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
