"""The README's examples run as written: its demo tour against the demo's own config, its files and ports.

The tour is every fenced block under the README's demo heading, in order. `sh` blocks are run as
they stand (they create the request bodies the tour posts); each `$ curl ...` line of a `console`
block is run with bash against a gateway started from config/examples/demo.yaml, on free ports,
in front of two real inference workers serving the demo's models, and its output is compared with
the README's:

- an HTTP answer must have the status line shown and exactly the headers shown (names), with the
  values shown except those that change from run to run (dates, request ids, lengths, ...);
- a JSON body must match, numbers to three significant digits (retrained models drift in the last
  digits); any other line must match exactly;
- `uniq -c` counts of statuses (the rate-limit burst) must show the same statuses, adding up to the
  same number of requests: how many of each varies with the machine.

A console block in docs/ marked `<!-- demo-stack -->` on the line before its fence runs against
the same stack after the tour's files are made.

The other tests need no processes: the files the README names exist, every link of the README and
of docs/ reaches its file and heading, the tour creates every body it posts, and "A gateway of your
own" keeps off the demo's ports or says to stop the demo first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.inference_workers.support import WorkerProcess, free_port, start_worker
from tests.support.processes import ROOT, GatewayProcess, start_gateway

README = ROOT / "README.md"
DEMO_CONFIG = ROOT / "config" / "examples" / "demo.yaml"
QUICKSTART_CONFIG = ROOT / "config" / "examples" / "quickstart.yaml"
# The tour's heading, and the section that follows it.
TOUR_HEADING = re.compile(r"^(#{2,3}) A tour of the demo\s*$", re.MULTILINE)
OWN_GATEWAY_HEADING = re.compile(r"^(#{2,3}) A gateway of your own\s*$", re.MULTILINE)
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# A console block in docs/ that runs against the demo stack says so on the line before its fence.
DEMO_STACK_BLOCK = re.compile(r"^<!-- demo-stack -->\n```console\n(.*?)^```$", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6} (.*)$")
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOC_PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# The demo's addresses as the README writes them, and the ports of its workers (gateway/demo.py).
DEMO_GATEWAY_PORT = 8080
DEMO_ADMIN_PORT = 9901
DEMO_WORKER_PORTS = (8001, 8002, 8011, 8012)
# Headers whose values differ from one run to the next, or with the machine and library versions.
VOLATILE_HEADERS = frozenset(
    {
        "date",
        "x-request-id",
        "set-cookie",
        "content-length",
        "age",
        "server",
        "ratelimit",
        "x-turnout-queue-depth",
        "x-turnout-inflight",
        "x-turnout-exposure-id",
    }
)
# Ids the gateway makes (request and exposure ids: 32 hex digits) differ in every run.
GATEWAY_ID = re.compile(r"\b[0-9a-f]{32}\b")
# A command of the tour answers in well under a second; this only bounds a hung one.
COMMAND_TIMEOUT_S = 30.0
# Model outputs are compared to this many significant digits.
SIGNIFICANT_DIGITS = 3
UNIQ_LINE = re.compile(r"^\s*(\d+) (\d{3})$")
ASSIGNMENT = re.compile(r"^\w+=\$\(")


def section(text: str, heading: re.Pattern[str]) -> str:
    """The text under the first heading that matches, up to the next heading of its level or above."""
    match = heading.search(text)
    assert match is not None, f"the README lost its section {heading.pattern!r}"
    level = len(match.group(1))
    following = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE)
    end = following.search(text, match.end())
    return text[match.end() : end.start() if end else len(text)]


@dataclass(frozen=True, slots=True)
class Example:
    command: str
    expected: str


def console_examples(block: str) -> list[Example]:
    """`$ command` lines, with their continuations (`> ` lines, or after a trailing backslash),
    each followed by the output the README shows for it."""
    examples: list[tuple[list[str], list[str]]] = []
    for line in block.splitlines():
        continues = bool(examples) and not examples[-1][1]
        if line.startswith("$ "):
            examples.append(([line[2:]], []))
        elif continues and (line.startswith("> ") or examples[-1][0][-1].endswith("\\")):
            examples[-1][0].append(line.removeprefix("> "))
        elif examples:
            examples[-1][1].append(line)
    return [Example("\n".join(command), "\n".join(output)) for command, output in examples]


@dataclass(frozen=True, slots=True)
class Answer:
    status: str
    headers: dict[str, str]
    body: list[str]


def split_answers(output: str) -> list[Answer]:
    """HTTP answers as curl -si prints them, one after another; empty when there are none."""
    answers: list[Answer] = []
    in_headers = False
    for line in output.replace("\r", "").splitlines():
        if line.startswith("HTTP/1.1 "):
            answers.append(Answer(line, {}, []))
            in_headers = True
        elif not answers:
            return []
        elif in_headers and line:
            name, _, value = line.partition(":")
            answers[-1].headers[name.lower()] = value.strip()
        elif in_headers:
            in_headers = False
        elif line:
            answers[-1].body.append(line)
    return answers


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def normalized(line: str) -> Any:
    line = GATEWAY_ID.sub("<id>", line)
    try:
        return _rounded(json.loads(line))
    except ValueError:
        return line.rstrip()


def differences(example: Example, actual: str) -> list[str]:
    """How the actual output departs from the README's; empty when it matches."""
    expected_answers, actual_answers = split_answers(example.expected), split_answers(actual)
    if expected_answers:
        if len(actual_answers) != len(expected_answers):
            return [f"{len(expected_answers)} answers shown, {len(actual_answers)} received:\n{actual}"]
        found = []
        volatile = VOLATILE_HEADERS | ({"x-turnout-arm"} if "x-user-id" not in example.command else set())
        for shown, real in zip(expected_answers, actual_answers, strict=True):
            if shown.status != real.status:
                found.append(f"status {real.status!r}, shown {shown.status!r}")
            if set(shown.headers) != set(real.headers):
                found.append(f"headers {sorted(real.headers)}, shown {sorted(shown.headers)}")
            for name in set(shown.headers) & set(real.headers) - volatile:
                if shown.headers[name] != real.headers[name]:
                    found.append(f"{name}: {real.headers[name]!r}, shown {shown.headers[name]!r}")
            if [normalized(line) for line in shown.body] != [normalized(line) for line in real.body]:
                found.append(f"body {real.body}, shown {shown.body}")
        return found
    shown_lines = example.expected.splitlines()
    real_lines = actual.replace("\r", "").splitlines()
    if shown_lines and all(UNIQ_LINE.match(line) for line in shown_lines):
        return _count_differences(shown_lines, real_lines)
    if [normalized(line) for line in shown_lines] != [normalized(line) for line in real_lines]:
        return [f"output:\n{actual}\nshown:\n{example.expected}"]
    return []


def _count_differences(shown_lines: list[str], real_lines: list[str]) -> list[str]:
    def counts(lines: list[str]) -> dict[str, int] | None:
        matches = [UNIQ_LINE.match(line) for line in lines]
        if not all(matches):
            return None
        return {match.group(2): int(match.group(1)) for match in matches if match}

    shown, real = counts(shown_lines), counts(real_lines)
    if real is None or shown is None:
        return [f"not status counts: {real_lines}"]
    if set(real) != set(shown) or sum(real.values()) != sum(shown.values()):
        return [f"status counts {real}, shown {shown} (the same statuses and total are expected)"]
    return []


def _readme() -> str:
    return README.read_text()


# ---------------------------------------------------------------------------------------------
# Without processes


def test_the_console_parser_reads_continuations_and_outputs() -> None:
    block = "$ make demo\n...\n$ for u in a b; do\n>   echo $u\n> done\na\nb\n$ curl -s x \\\n    -d y\n{}\n"
    assert console_examples(block) == [
        Example("make demo", "..."),
        Example("for u in a b; do\n  echo $u\ndone", "a\nb"),
        Example("curl -s x \\\n    -d y", "{}"),
    ]


def test_a_changed_header_or_status_is_a_difference() -> None:
    shown = 'HTTP/1.1 200 OK\nx-turnout-cache: hit\ndate: Mon\n\n{"data": [205.3932]}'
    example = Example("curl -si x", shown)
    assert differences(example, shown.replace("Mon", "Tue").replace("205.3932", "205.39307")) == []
    assert differences(example, shown.replace("hit", "miss")) == ["x-turnout-cache: 'miss', shown 'hit'"]
    assert differences(example, shown.replace("200 OK", "429 Too Many Requests"))
    assert differences(example, shown.replace("date: Mon\n", ""))  # a header shown that is not there
    assert differences(Example("x", "  3 200\n  2 429"), "  4 200\n  1 429") == []
    assert differences(Example("x", "  3 200\n  2 429"), "  5 200")


def _prose_lines(text: str) -> Iterator[str]:
    """The lines outside fenced code blocks."""
    inside = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif not inside:
            yield line


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as dashes."""
    return {
        re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        for match in map(HEADING.match, _prose_lines(text))
        if match
    }


def test_heading_anchors_are_githubs() -> None:
    text = (
        "## listen, admin, access_log\n### A/B tests\n"
        "```sh\n# not a heading\n```\n## `turnout report` and export\n"
    )
    assert heading_anchors(text) == {"listen-admin-access_log", "ab-tests", "turnout-report-and-export"}


def test_the_files_the_readme_names_exist() -> None:
    named = set(
        re.findall(r"`((?:config|docs|loadtests|bench|gateway|plugins|tests)/[\w./-]*\w)`", _readme())
    )
    # Files an install or a run writes (the build record, results) are not in a fresh checkout.
    generated = {line.strip().strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()}
    missing = sorted(path for path in named - generated if not (ROOT / path).exists())
    assert not missing, f"the README names files that do not exist: {missing}"


@pytest.mark.parametrize("page", DOC_PAGES, ids=[str(page.relative_to(ROOT)) for page in DOC_PAGES])
def test_every_link_of_the_readme_and_docs_leads_somewhere(page: Path) -> None:
    """Relative links reach a file, and a link to a heading (`page.md#anchor`) reaches that heading:
    what moves between the README and docs/ keeps its links working."""
    broken = []
    for line in _prose_lines(page.read_text()):
        for target in LINK.findall(line):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            destination = (page.parent / path).resolve() if path else page
            if not destination.exists():
                broken.append(f"{target} (no such file)")
            elif (
                anchor
                and destination.suffix == ".md"
                and anchor not in heading_anchors(destination.read_text())
            ):
                broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)} has broken links: {broken}"


def test_the_tour_creates_every_body_it_posts() -> None:
    created: set[str] = set()
    for lang, body in FENCE.findall(section(_readme(), TOUR_HEADING)):
        if lang == "sh":
            created.update(re.findall(r"cat > ([\w.-]+) <<", body))
        for example in console_examples(body) if lang == "console" else ():
            posted = set(re.findall(r"-d @([\w.-]+)", example.command))
            assert posted <= created, (
                f"{example.command!r} posts {posted - created} before the tour creates it"
            )


def _ports(config: dict[str, Any]) -> set[int]:
    ports = {int(config["listen"]["port"]), int(config["admin"]["port"])}
    for cluster in config["clusters"].values():
        for endpoint in cluster.get("endpoints", ()):
            address = endpoint if isinstance(endpoint, str) else endpoint["address"]
            ports.add(int(address.rpartition(":")[2]))
    return ports


def test_a_gateway_of_your_own_runs_beside_the_demo_or_says_to_stop_it() -> None:
    """Right after the tour, the demo is still up: the quickstart either keeps off its ports, or the
    section says to stop the demo before `turnout run` (else it exits "address already in use")."""
    demo = _ports(yaml.safe_load(DEMO_CONFIG.read_text())) | set(DEMO_WORKER_PORTS)
    quickstart = _ports(yaml.safe_load(QUICKSTART_CONFIG.read_text()))
    assert {DEMO_GATEWAY_PORT, DEMO_ADMIN_PORT} <= demo
    text = section(_readme(), OWN_GATEWAY_HEADING)
    if demo & quickstart:
        before_run = text.split("turnout run", 1)[0]
        assert re.search(r"stop the demo", before_run, re.IGNORECASE), (
            f"the quickstart shares the demo's ports {sorted(demo & quickstart)}, and the section does "
            "not say to stop the demo before `turnout run`"
        )
    # The section's commands talk to the quickstart gateway and its upstreams, nothing else.
    used = {int(port) for port in re.findall(r"(?:localhost|127\.0\.0\.1):(\d+)", text)}
    assert used, "the section lost its commands"
    assert used <= quickstart, f"ports {sorted(used - quickstart)} are not the quickstart's"


# ---------------------------------------------------------------------------------------------
# The tour against a real stack


@dataclass(frozen=True, slots=True)
class DemoStack:
    port: int
    admin_port: int
    workdir: Path


def _demo_config(worker_a: WorkerProcess, worker_b: WorkerProcess, workdir: Path) -> tuple[str, int, int]:
    """demo.yaml's text with free ports for the gateway, the test's workers, and files under `workdir`.

    The text is edited rather than loaded and dumped again, so that the file the gateway reads is
    the demo's own, comments and YAML quirks (a bare `on:` key) included."""
    port, admin_port = free_port(), free_port()
    text = DEMO_CONFIG.read_text()
    for old, new in (
        (f"port: {DEMO_GATEWAY_PORT}\n", f"port: {port}\n"),
        (f"port: {DEMO_ADMIN_PORT}\n", f"port: {admin_port}\n"),
        ("127.0.0.1:8001", worker_a.url.removeprefix("http://")),
        ("127.0.0.1:8002", worker_b.url.removeprefix("http://")),
        ("${TURNOUT_ACCESS_LOG:-stdout}", str(workdir / "access.log")),
        ("sqlite_path: var/turnout.db", f"sqlite_path: {workdir / 'turnout.db'}"),
    ):
        assert old in text, f"demo.yaml no longer holds {old!r}: update this test"
        text = text.replace(old, new)
    return text, port, admin_port


@pytest.fixture(scope="module")
def demo_stack(demo_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    models = demo_models
    logs = tmp_path_factory.mktemp("demo-logs")
    worker_a = start_worker(models, logs, "--models", "risk:1,risk-mlp,diabetes")
    worker_b = start_worker(models, logs, "--models", "risk:2,risk-mlp,diabetes")
    workdir = tmp_path_factory.mktemp("tour")
    text, port, admin_port = _demo_config(worker_a, worker_b, workdir)
    path = logs / "demo.yaml"
    path.write_text(text)
    gateway: GatewayProcess | None = None
    try:
        gateway = start_gateway(path, port, admin_port, logs)
        yield DemoStack(port, admin_port, workdir)
    finally:
        if gateway is not None:
            gateway.stop()
        worker_b.stop()
        worker_a.stop()


def _run(command: str, stack: DemoStack) -> str:
    for host in ("localhost", "127.0.0.1"):
        command = command.replace(f"{host}:{DEMO_GATEWAY_PORT}", f"{host}:{stack.port}")
        command = command.replace(f"{host}:{DEMO_ADMIN_PORT}", f"{host}:{stack.admin_port}")
    done = subprocess.run(
        ["bash", "-c", command], cwd=stack.workdir, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )
    assert done.returncode == 0 or done.stdout, f"{command!r} failed: {done.stderr}"
    return done.stdout


@pytest.mark.skipif(
    shutil.which("curl") is None and not os.environ.get("CI"), reason="the tour's commands are curl commands"
)
def test_the_demo_tour_runs_as_written(demo_stack: DemoStack) -> None:
    ran = 0
    found: list[str] = []
    # `NAME=$(...)` lines set a shell variable later commands use: each command runs in its own
    # shell here, so the assignments made so far are run again before it.
    assignments: list[str] = []
    for lang, body in FENCE.findall(section(_readme(), TOUR_HEADING)):
        if lang == "sh":
            _run(body, demo_stack)
        elif lang == "console":
            for example in console_examples(body):
                if ASSIGNMENT.match(example.command):
                    assignments.append(example.command)
                    continue
                if not example.command.startswith(("curl ", "for ", "seq ")):
                    continue  # `make demo` itself: the stack here is the test's
                ran += 1
                actual = _run("\n".join([*assignments, example.command]), demo_stack)
                found += [f"$ {example.command}\n  {problem}" for problem in differences(example, actual)]
    assert ran >= 8, f"only {ran} commands found in the tour"
    assert not found, "the README's tour departs from what the demo does:\n" + "\n".join(found)


@pytest.mark.skipif(
    shutil.which("curl") is None and not os.environ.get("CI"),
    reason="the examples' commands are curl commands",
)
def test_the_docs_examples_on_the_demo_stack_run_as_written(demo_stack: DemoStack) -> None:
    for lang, body in FENCE.findall(section(_readme(), TOUR_HEADING)):
        if lang == "sh":
            _run(body, demo_stack)  # the bodies the tour creates, which the docs' examples post too
    ran = 0
    found: list[str] = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for body in DEMO_STACK_BLOCK.findall(page.read_text()):
            for example in console_examples(body):
                ran += 1
                actual = _run(example.command, demo_stack)
                found += [
                    f"{page.name}: $ {example.command}\n  {problem}"
                    for problem in differences(example, actual)
                ]
    assert ran >= 1, "no docs page marks an example as running on the demo stack"
    assert not found, "the docs' demo examples depart from what the demo does:\n" + "\n".join(found)
