"""The compiled data path: which modules load compiled, and the switch back to their sources."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.core import native

ROOT = Path(__file__).resolve().parents[3]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _run(code: str, **env: str) -> str:
    """Run `code` in a fresh interpreter (imports are once per process) and return its output."""
    environment = {k: v for k, v in os.environ.items() if k != "TURNOUT_PURE_PYTHON"} | env
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def _tree(tmp_path: Path, source_mtime: float, built_mtime: float | None) -> Path:
    """A copy of the listed sources' layout, with a compiled module beside one of them."""
    for source in native.COMPILED_MODULES:
        path = tmp_path / source
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("VALUE = 'from source'\n")
        os.utime(path, (source_mtime, source_mtime))
    if built_mtime is not None:
        built = tmp_path / "gateway" / "http" / f"pool{SUFFIX}"
        built.write_bytes(b"")
        os.utime(built, (built_mtime, built_mtime))
    return tmp_path


def test_the_listed_modules_are_the_data_path_sources() -> None:
    for source in native.COMPILED_MODULES:
        assert (ROOT / source).is_file(), source
    assert native.module_name("gateway/http/pool.py") == "gateway.http.pool"


def test_a_source_edited_after_its_build_is_stale(tmp_path: Path) -> None:
    assert native.stale_modules(_tree(tmp_path, source_mtime=2000.0, built_mtime=1000.0)) == [
        "gateway/http/pool.py"
    ]


def _prefer_sources_in_child(root: Path, then: str) -> str:
    """In a fresh interpreter without the finder the package installed: print what
    `native.prefer_sources(root)` answers, run `then`, and return the output."""
    return _run(
        textwrap.dedent(
            f"""
        import sys
        from pathlib import Path
        from gateway.core import native
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, native._SourceFinder)]
        print(native.prefer_sources(Path({str(root)!r}), {{}}))
        """
        )
        + textwrap.dedent(then)
    )


def test_a_build_newer_than_its_source_is_current(tmp_path: Path) -> None:
    assert native.stale_modules(_tree(tmp_path, source_mtime=1000.0, built_mtime=2000.0)) == []


def test_sources_without_a_build_are_not_stale(tmp_path: Path) -> None:
    assert native.stale_modules(_tree(tmp_path, source_mtime=1000.0, built_mtime=None)) == []


def test_a_stale_build_makes_every_listed_module_load_from_source(tmp_path: Path) -> None:
    root = _tree(tmp_path, source_mtime=2000.0, built_mtime=1000.0)
    output = _prefer_sources_in_child(
        root,
        """
        import importlib.util
        for name in ("gateway.http.pool", "gateway.proxy", "routing.endpoints"):
            print(importlib.util.find_spec(name).origin)
        """,
    )
    reason, *origins = output.splitlines()
    assert reason == f"{native.STALE_BUILD}: gateway/http/pool.py"
    assert origins == [
        str(root / "gateway/http/pool.py"),
        str(root / "gateway/proxy.py"),
        str(root / "routing/endpoints.py"),
    ]


def test_a_current_build_is_left_in_charge(tmp_path: Path) -> None:
    root = _tree(tmp_path, source_mtime=1000.0, built_mtime=2000.0)
    output = _prefer_sources_in_child(
        root, "print(any(isinstance(f, native._SourceFinder) for f in sys.meta_path))"
    )
    assert output.splitlines() == ["None", "False"]


def test_turnout_pure_python_runs_the_data_path_from_source() -> None:
    output = _run(
        """
        import gateway, gateway.proxy
        from gateway.core import native
        print(gateway.SOURCE_REASON)
        print(gateway.proxy.__file__)
        print(native.data_path_mode())
        """,
        TURNOUT_PURE_PYTHON="1",
    )
    reason, proxy_file, mode = output.splitlines()
    assert reason == "TURNOUT_PURE_PYTHON is set"
    assert proxy_file == str(ROOT / "gateway" / "proxy.py")
    assert mode == "pure Python"


def test_a_compiled_install_runs_the_compiled_data_path() -> None:
    built = list((ROOT / "gateway").glob(f"proxy{SUFFIX}"))
    if not built or native.stale_modules():
        message = "this install's data path is not compiled (no C compiler, or TURNOUT_PURE_PYTHON)"
        if os.environ.get("TURNOUT_REQUIRE_COMPILED"):  # set by CI, where a compiler is installed
            pytest.fail(message)
        pytest.skip(message)
    output = _run(
        """
        import gateway.proxy
        from gateway.core import native
        print(gateway.proxy.__file__)
        print(native.data_path_mode())
        print(len(native.compiled_modules()))
        """
    )
    proxy_file, mode, count = output.splitlines()
    assert proxy_file.endswith(SUFFIX)
    assert mode == "compiled"
    # The import of gateway.proxy brings in most of the others; all that were imported are compiled.
    assert int(count) >= 8
