"""Install turnout the documented ways from a fresh clone, and serve the quickstart from each.

    python3 tests/install/check_installs.py [--only wheel|editable] [--expect compiled|pure]
                                            [--no-c-compiler]

Each way gets a new virtual environment: a wheel (`pip wheel --no-deps .`, then `pip install` of it:
the lean install, no extras) and the isolated editable install (`pip install -e '.[dev]'`). Each
then runs `turnout run` on config/examples/quickstart.yaml (its ports moved to free ones), in front
of two small upstreams, sends one proxied request, and checks the start-up log names the data path
as expected: compiled where a C compiler is present. Run by .ci/run rather than pytest: the builds
take minutes, and they test what a new user does, from the committed tree. --no-c-compiler builds
as a machine without one would (CC names a compiler that does not exist): the installs must still
serve, with `data path: pure Python (not compiled at install: ...)`.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = "config/examples/quickstart.yaml"
# Long enough for a cold start on a loaded 2-core CI machine; a healthy start takes about a second.
START_TIMEOUT_S = 60.0
# One build of the data path takes about a minute on 2 cores; the rest is downloads from the index.
INSTALL_TIMEOUT_S = 900
# In the quickstart: the listener's and the admin API's port, then its two endpoints.
_PORT = re.compile(r"^(  port: )\d+$", re.MULTILINE)
_ENDPOINT = re.compile(r"^(      - 127\.0\.0\.1:)\d+$", re.MULTILINE)
_LISTENING = re.compile(r"turnout listening on .*\(data path: (?P<mode>.+)\)\s*$", re.MULTILINE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["wheel", "editable"], help="one way instead of both")
    parser.add_argument(
        "--expect",
        choices=["compiled", "pure"],
        default="compiled" if shutil.which("gcc") or shutil.which("cc") else "pure",
        help="the data path each install must run (default: compiled where a C compiler is found)",
    )
    parser.add_argument("--no-c-compiler", action="store_true", help="build as if no C compiler existed")
    parser.add_argument("--keep", action="store_true", help="keep the work folder for a look after")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="turnout-install-"))
    if args.no_c_compiler:
        os.environ["CC"] = str(work / "no-c-compiler")  # the builds' C compiler, not found
        args.expect = "pure"
    failures = []
    try:
        clone = work / "clone"
        _run(["git", "clone", "--quiet", str(ROOT), str(clone)])
        ways = [args.only] if args.only else ["wheel", "editable"]
        for way in ways:
            venv = work / f"venv-{way}"
            _run([sys.executable, "-m", "venv", str(venv)])
            started = time.monotonic()
            if way == "wheel":
                _install_wheel(venv, clone, work / "dist")
            else:
                _pip(venv, "install", "--quiet", "-e", f"{clone}[dev]")
            installed_s = time.monotonic() - started
            try:
                mode = _serve_quickstart(venv, clone, work)
            except CheckFailed as failed:
                failures.append(f"{way}: {failed}")
                continue
            print(f"{way}: installed in {installed_s:.0f} s, proxied a request, data path: {mode}")
            if (mode == "compiled") != (args.expect == "compiled"):
                failures.append(f"{way}: data path: {mode}, expected {args.expect}")
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


class CheckFailed(Exception):
    """The installed gateway did not start or did not proxy."""


def _clean_environment() -> dict[str, str]:
    """This environment without turnout's own switches (TURNOUT_PURE_PYTHON would skip compiling):
    what a new user's shell holds."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}


def _run(command: list[str], cwd: Path | None = None) -> None:
    subprocess.run(command, cwd=cwd, env=_clean_environment(), check=True, timeout=INSTALL_TIMEOUT_S)


def _pip(venv: Path, *args: str) -> None:
    _run([str(venv / "bin" / "python"), "-m", "pip", *args])


def _install_wheel(venv: Path, clone: Path, dist: Path) -> None:
    _pip(venv, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(clone))
    (wheel,) = dist.glob("turnout-*.whl")
    _pip(venv, "install", "--quiet", str(wheel))


def _serve_quickstart(venv: Path, clone: Path, work: Path) -> str:
    """Run the quickstart with the installed `turnout`; proxy one request; the data path's mode."""
    gateway_port, admin_port = _free_port(), _free_port()
    with _upstream() as first, _upstream() as second:
        config = _moved((clone / QUICKSTART).read_text(), _PORT, [gateway_port, admin_port])
        config = _moved(config, _ENDPOINT, [first, second])
        path = work / "quickstart.yaml"
        path.write_text(config)
        log_path = work / f"gateway-{venv.name}.log"
        # Run outside the clone, so the gateway imports what was installed, not the checkout.
        with log_path.open("w") as log:
            gateway = subprocess.Popen(
                [str(venv / "bin" / "turnout"), "run", "--config", str(path), "--no-watch"],
                cwd=work,
                env=_clean_environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            mode = _wait_listening(gateway, log_path)
            _proxy_one(gateway_port)
        except CheckFailed as failed:
            raise CheckFailed(f"{failed}\n--- gateway log ---\n{log_path.read_text()[-4000:]}") from None
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
    return mode


def _moved(config: str, pattern: re.Pattern[str], ports: list[int]) -> str:
    """The quickstart with each match of `pattern` (in order) on the next of `ports`."""
    found = pattern.findall(config)
    if len(found) != len(ports):
        raise CheckFailed(f"{QUICKSTART} has {len(found)} lines like {pattern.pattern!r}: update this check")
    moved = iter(ports)
    return pattern.sub(lambda match: f"{match[1]}{next(moved)}", config)


def _wait_listening(gateway: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = _LISTENING.search(log_path.read_text())
        if found:
            return found["mode"]
        if gateway.poll() is not None:
            raise CheckFailed(f"the gateway exited with status {gateway.returncode} before listening")
        time.sleep(0.2)
    raise CheckFailed(f"the gateway did not listen within {START_TIMEOUT_S:.0f} s")


def _proxy_one(port: int) -> None:
    # The health checks may not have passed yet on the first try: the quickstart retries only
    # refused connections, so allow a few seconds for both endpoints to come into rotation.
    deadline = time.monotonic() + 10.0
    while True:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/echo",
            data=b'{"hello": "turnout"}',
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                body = json.loads(response.read())
        except OSError as exc:
            if time.monotonic() > deadline:
                raise CheckFailed(f"the proxied request failed: {exc}") from None
            time.sleep(0.2)
            continue
        if body.get("path") != "/v1/echo" or body.get("body") != '{"hello": "turnout"}':
            raise CheckFailed(f"the upstream saw another request: {body}")
        return


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers health checks, and echoes what it received as JSON."""

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("content-length", "0"))))

    def _answer(self, body: bytes) -> None:
        payload = json.dumps({"path": self.path, "body": body.decode()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # quiet: the gateway logs requests
        pass


@contextmanager
def _upstream() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


if __name__ == "__main__":
    sys.exit(main())
