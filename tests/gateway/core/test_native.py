"""The compiled data path: which modules load compiled, and the switch back to their sources."""

from __future__ import annotations

import hashlib
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


def _tree(tmp_path: Path, built: bool, recorded: str | None) -> Path:
    """A copy of the listed sources' layout, with a compiled module beside one of them when `built`,
    and a build record of the sources as they were when `recorded` names what they held then."""
    for source in native.COMPILED_MODULES:
        path = tmp_path / source
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(recorded if recorded is not None else "VALUE = 'from source'\n")
    if recorded is not None:
        native.write_build_record(tmp_path, tmp_path)
    for source in native.COMPILED_MODULES:
        (tmp_path / source).write_text("VALUE = 'from source'\n")
    if built:
        (tmp_path / "gateway" / "http" / f"pool{SUFFIX}").write_bytes(b"")
    return tmp_path


def test_the_listed_modules_are_the_data_path_sources() -> None:
    for source in native.COMPILED_MODULES:
        assert (ROOT / source).is_file(), source
    assert native.module_name("gateway/http/pool.py") == "gateway.http.pool"


def test_a_source_edited_after_its_build_is_stale(tmp_path: Path) -> None:
    root = _tree(tmp_path, built=True, recorded="VALUE = 'as compiled'\n")
    assert native.stale_modules(root) == ["gateway/http/pool.py"]


def test_a_source_as_compiled_is_current_whatever_its_file_time(tmp_path: Path) -> None:
    # What pip does to a wheel: the source lands after its compiled module, with a newer file time.
    root = _tree(tmp_path, built=True, recorded="VALUE = 'from source'\n")
    built = root / "gateway" / "http" / f"pool{SUFFIX}"
    os.utime(built, (1000.0, 1000.0))
    os.utime(root / "gateway" / "http" / "pool.py", (2000.0, 2000.0))
    assert native.stale_modules(root) == []


def test_a_compiled_module_without_a_build_record_is_stale(tmp_path: Path) -> None:
    assert native.stale_modules(_tree(tmp_path, built=True, recorded=None)) == ["gateway/http/pool.py"]


def test_an_unreadable_build_record_names_no_source(tmp_path: Path) -> None:
    root = _tree(tmp_path, built=True, recorded="VALUE = 'from source'\n")
    (root / native.BUILD_RECORD).write_text("{not json")
    assert native.read_build_record(root) == ({}, None)
    assert native.stale_modules(root) == ["gateway/http/pool.py"]


def test_sources_without_a_build_are_not_stale(tmp_path: Path) -> None:
    assert native.stale_modules(_tree(tmp_path, built=False, recorded=None)) == []


def test_the_build_record_holds_each_source_digest_or_why_nothing_was_compiled(tmp_path: Path) -> None:
    root = _tree(tmp_path, built=False, recorded="VALUE = 'from source'\n")
    digests, why_not = native.read_build_record(root)
    assert why_not is None
    assert sorted(digests) == sorted(native.COMPILED_MODULES)
    assert digests["gateway/proxy.py"] == hashlib.sha256(b"VALUE = 'from source'\n").hexdigest()
    native.write_build_record(root, root, why_not="the C build failed (no gcc)")
    assert native.read_build_record(root) == ({}, "the C build failed (no gcc)")


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


def test_a_stale_build_makes_every_listed_module_load_from_source(tmp_path: Path) -> None:
    root = _tree(tmp_path, built=True, recorded="VALUE = 'as compiled'\n")
    output = _prefer_sources_in_child(
        root,
        """
        import importlib.util
        for name in ("gateway.http.pool", "gateway.proxy", "routing.endpoints"):
            print(importlib.util.find_spec(name).origin)
        print(native.data_path_mode())
        """,
    )
    reason, *origins, mode = output.splitlines()
    assert reason == f"{native.STALE_BUILD}: gateway/http/pool.py"
    assert origins == [
        str(root / "gateway/http/pool.py"),
        str(root / "gateway/proxy.py"),
        str(root / "routing/endpoints.py"),
    ]
    assert mode == f"pure Python ({reason})"


def test_a_current_build_is_left_in_charge(tmp_path: Path) -> None:
    root = _tree(tmp_path, built=True, recorded="VALUE = 'from source'\n")
    output = _prefer_sources_in_child(
        root, "print(any(isinstance(f, native._SourceFinder) for f in sys.meta_path))"
    )
    assert output.splitlines() == ["None", "False"]


def test_an_install_left_uncompiled_says_why(tmp_path: Path) -> None:
    root = _tree(tmp_path, built=False, recorded=None)
    native.write_build_record(root, root, why_not="the C build failed (no gcc)")
    output = _prefer_sources_in_child(
        root,
        f"""
        import types
        proxy = types.ModuleType("gateway.proxy")
        proxy.__file__ = {str(root / "gateway" / "proxy.py")!r}
        sys.modules["gateway.proxy"] = proxy
        print(native.data_path_mode(Path({str(root)!r})))
        """,
    )
    assert output.splitlines() == [
        "None",
        f"pure Python ({native.NOT_COMPILED}: the C build failed (no gcc))",
    ]


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
    assert mode == "pure Python (TURNOUT_PURE_PYTHON is set)"


def test_a_compiled_install_runs_the_compiled_data_path() -> None:
    built = list((ROOT / "gateway").glob(f"proxy{SUFFIX}"))
    if not built or native.stale_modules():
        message = "this install's data path is not compiled (no C compiler, or sources edited since)"
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
