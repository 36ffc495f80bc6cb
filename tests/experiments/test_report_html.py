"""The HTML report: one self-contained page whose plots load in a headless browser without errors."""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from experiments.config import AbConfig
from experiments.events import Event, Feedback, exposure_for, outcome_for
from experiments.report import build_report, render
from experiments.splits import AbSplit
from experiments.store.sqlite import SqliteEventStore
from gateway.core.context import RequestContext

START = 1_700_000_000.0
# Chromium starts in under a second here; the limit leaves room on a loaded 2-core machine.
BROWSER_TIMEOUT_S = 60.0
FIGURES = ("plot-lift", "plot-exposures", "plot-latency")
CONFIG = AbConfig.model_validate(
    {
        "kind": "ab",
        "unit": "header:x-user-id",
        "arms": {"control": {"cluster": "v1"}, "treatment": {"cluster": "v2"}},
        "metrics": ["latency", "error_rate", "feedback:conversion"],
        "segments": ["header:x-region"],  # the segment table must fit the screen too
        "expected_units": 2000,
    }
)


async def _report_html(path: Path, units: int, seed: int) -> str:
    """A store fed `units` users (two requests each; the treatment converts more and answers slower),
    as HTML."""
    rng = np.random.default_rng(seed)
    split = AbSplit("exp", CONFIG)
    events: list[Event] = []
    for i in range(units):
        unit, at = f"user-{i}", START + i
        context = RequestContext("POST", "/infer", "", {"x-user-id": unit}, "127.0.0.1", time.monotonic())
        assignment = split.choose(context)
        for r in range(2):
            request_id = uuid.uuid4().hex
            latency = float(rng.lognormal(math.log(0.04 if assignment.arm == "control" else 0.05), 0.4))
            region = (("header:x-region", ("eu-west-1", "us-east-1", "ap-southeast-2")[i % 3]),)
            events.append(exposure_for(assignment, request_id, at + r, segments=region))
            events.append(
                outcome_for(assignment, request_id, at + r + latency, latency_s=latency, status=200)
            )
        if rng.random() < (0.1 if assignment.arm == "control" else 0.2):
            events.append(Feedback("conversion", 1.0, at + 5.0, unit_id=unit))
    async with SqliteEventStore(path) as store:
        await store.write(events)
        report = await build_report("exp", CONFIG, split, store, now=START + units + 60.0)
    return render(report, "html")


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two reports as files: one with plenty of data, one with too little for intervals."""
    folder = tmp_path_factory.mktemp("reports")
    files = {}
    for name, units in (("full", 1200), ("thin", 12)):
        page = folder / f"{name}.html"
        page.write_text(asyncio.run(_report_html(folder / f"{name}.db", units, seed=units)), encoding="utf-8")
        files[name] = page
    return files


def _external_references(html: str) -> list[str]:
    """src/href attributes and CSS url()s that point outside the page (SVG's own #ids are inside)."""
    attributes = re.findall(r'\b(?:src|href)\s*=\s*"(?!#)([^"]*)"', html)
    urls = re.findall(r"url\(\s*(?!['\"]?#)([^)]*)\)", html)
    return attributes + urls + re.findall(r"@import[^;]*", html)


@pytest.mark.parametrize("name", ["full", "thin"])
def test_the_page_is_self_contained_with_three_inline_plots(pages: dict[str, Path], name: str) -> None:
    html = pages[name].read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.count("<html") == 1
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert _external_references(html) == []
    assert [f for f in re.findall(r'<figure id="([^"]+)"><svg', html)] == list(FIGURES)
    assert html.count("<svg") == 3
    ids = Counter(re.findall(r'\bid="([^"]+)"', html))
    assert [i for i, n in ids.items() if n > 1] == []  # plots inlined together must not share ids
    for section in ("decision", "health", "setup", "arms", "goals", "guardrails", "methods"):
        assert f'<section id="{section}">' in html
    assert html.index('<section id="decision">') < html.index('<section id="health">')
    # An A/B test has no canary timeline and, without shadow comparisons, no shadow section.
    assert '<section id="timeline">' not in html and '<section id="shadow">' not in html


def test_a_thin_report_says_why_its_plots_are_sparse(pages: dict[str, Path]) -> None:
    html = pages["thin"].read_text(encoding="utf-8")
    assert 'class="banner blocking"' in html and "too few units" in html
    lift = html[html.index('<figure id="plot-lift">') : html.index('<figure id="plot-exposures">')]
    assert '<p class="note">' in lift and "unbounded until every arm has 100 units" in lift


def test_the_full_report_draws_its_data(pages: dict[str, Path]) -> None:
    html = pages["full"].read_text(encoding="utf-8")
    assert "Roll back" in html and "treatment is worse on latency" in html
    # One verdict: the better goal is named first, then the guardrail that blocks it; no green
    # "healthy" banner sits above the roll back.
    verdict = html[html.index('<section id="decision">') : html.index('<section id="health">')]
    goal = verdict.index("goal: treatment is better on feedback:conversion")
    assert goal < verdict.index("guardrail: treatment is worse on latency, which blocks shipping")
    assert 'class="banner ok"' not in html
    lift = html[html.index('<figure id="plot-lift">') : html.index('<figure id="plot-exposures">')]
    assert '<p class="note">' not in lift
    assert "treatment - control" in lift and "95 % confidence sequence" in lift  # the legend
    latency = html[html.index('<figure id="plot-latency">') :]
    assert "control (" in latency and "treatment (" in latency


@pytest.fixture(scope="module")
def browser() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = "headless Chromium is not installed (Debian: apt-get install -y chromium)"
    if os.environ.get("TURNOUT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"TURNOUT_REQUIRE_BROWSER=1 but {message}")
    pytest.skip(message)


def _load(browser: str, page: Path, profile: Path) -> tuple[str, list[str]]:
    """The page's DOM after loading, and the console messages Chromium logged."""
    result = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return result.stdout, console


def test_chromium_loads_each_report_with_its_plots_and_no_console_errors(
    browser: str, pages: dict[str, Path], tmp_path: Path
) -> None:
    for name, page in pages.items():
        dom, console = _load(browser, page, tmp_path / f"profile-{name}")
        assert console == [], (name, console)
        assert dom.count("<svg") == 3, name
        for figure in FIGURES:
            assert re.search(rf'<figure id="{figure}"><svg[^>]*>.*?<path', dom, re.DOTALL), (name, figure)


# What a page that fits the screen measures: the document is no wider than the 1,280 px window.
SCREEN_WIDTH = 1280
_MEASURE = (
    "<script>addEventListener('load', () => { const w = document.documentElement.scrollWidth;"
    " document.body.setAttribute('data-scroll-width', String(w));"
    " const wide = [...document.querySelectorAll('.scroll')].filter(e => e.scrollWidth > e.clientWidth);"
    " document.body.setAttribute('data-wide-tables', String(wide.length)); });</script>"
)


def test_every_report_fits_a_1280_px_screen_without_horizontal_scrolling(
    browser: str, pages: dict[str, Path], tmp_path: Path
) -> None:
    for name, page in pages.items():
        measured = tmp_path / f"measured-{name}.html"
        measured.write_text(page.read_text(encoding="utf-8").replace("</body>", _MEASURE + "</body>"))
        profile = tmp_path / f"profile-width-{name}"
        result = subprocess.run(
            [
                browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                f"--user-data-dir={profile}", f"--window-size={SCREEN_WIDTH},900",
                "--virtual-time-budget=2000", "--dump-dom", measured.as_uri(),
            ],
            capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        width = re.search(r'data-scroll-width="(\d+)"', result.stdout)
        wide = re.search(r'data-wide-tables="(\d+)"', result.stdout)
        assert width is not None and wide is not None, name
        assert int(width.group(1)) <= SCREEN_WIDTH and int(wide.group(1)) == 0, (name, width, wide)


def test_the_console_check_catches_a_page_error(browser: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>notDefined()</script></body></html>")
    _, console = _load(browser, broken, tmp_path / "profile")
    assert any("Uncaught" in line for line in console)
