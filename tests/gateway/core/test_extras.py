"""A part of turnout used without its extra says which extra to install.

The extras are installed here (the dev install has them all), so each test hides one of their
libraries in a fresh interpreter, as a gateway-only install would lack it: `sys.modules[name] = None`
makes both `import name` and `importlib.util.find_spec(name)` report it missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.core.extras import MissingExtra, require_extra

ROOT = Path(__file__).resolve().parents[3]
WORKERS_HELP = "from gateway.cli import main\nsys.exit(main(['workers', '--help']))"


def _run_without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    hide = f"import sys\nsys.modules[{module!r}] = None\n"
    return subprocess.run(
        [sys.executable, "-c", hide + textwrap.dedent(code)],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("module", ["onnxruntime", "sklearn", "skl2onnx", "grpc", "google.protobuf"])
def test_the_workers_command_without_its_extra_names_it(module: str) -> None:
    done = _run_without(module, WORKERS_HELP)
    assert done.returncode == 1
    assert done.stderr == (
        "turnout: the inference workers need the 'workers' extra: "
        f"pip install 'turnout[workers]' (not installed: {module})\n"
    )


def test_the_workers_command_with_its_extra_starts() -> None:
    done = _run_without("nothing_hidden", WORKERS_HELP)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout


def test_the_report_plots_without_their_extra_name_it() -> None:
    done = _run_without(
        "matplotlib",
        """
        from experiments.report.render import render_markdown  # the statistics need no extra
        import experiments.report.plots
        """,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "gateway.core.extras.MissingExtra: the report's plots need the 'reports' extra: "
        "pip install 'turnout[reports]' (not installed: matplotlib)"
    )


def test_a_gateway_serves_without_any_extra() -> None:
    # grpcio and hpack are base dependencies (gRPC on the main port); protobuf, Envoy's messages,
    # OpenTelemetry and the tokenizers come only with extras. The gRPC front door is imported when
    # the listener opens, so it is imported here by name.
    hidden = [
        "onnxruntime", "sklearn", "skl2onnx", "google.protobuf", "matplotlib", "envoy", "xds",
        "envoy_data_plane", "opentelemetry", "tokenizers", "tiktoken",
    ]  # fmt: skip
    done = _run_without(
        hidden[0],
        f"""
        for name in {hidden!r}:
            sys.modules[name] = None
        import gateway.server, gateway.cli, gateway.grpc.front_door, experiments.report, experiments.stats
        print("imported")
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_every_missing_module_is_named() -> None:
    # no_such_b.sub: a module whose parent package is missing (as google.protobuf without google).
    with pytest.raises(MissingExtra) as raised:
        require_extra("reports", "the report's plots", ("json", "no_such_a", "no_such_b.sub"))
    assert str(raised.value).endswith("'turnout[reports]' (not installed: no_such_a, no_such_b.sub)")
    assert raised.value.extra == "reports"
