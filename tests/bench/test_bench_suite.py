"""Running one section of the suite: its JSON result kept, its failure or overrun reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from _machine import cpu_model, describe_machine, memory_total
from _suite import SECTIONS, Section, last_json_document, run_section

# Far above what the fake sections need; only there so a broken runner fails instead of hanging.
TIMEOUT_S = 30.0


def _section(tmp_path: Path, body: str) -> Section:
    (tmp_path / "bench").mkdir(exist_ok=True)
    (tmp_path / "bench" / "fake.py").write_text(body)
    return Section("fake", "Fake", "fake.py", ("--full",), ("--short",))


def test_last_json_document_takes_a_single_line_or_an_indented_object() -> None:
    assert last_json_document('table\n{"a": 1}\n') == {"a": 1}
    assert last_json_document('built: models\n{\n  "a": [\n    1\n  ]\n}\n') == {"a": [1]}
    with pytest.raises(ValueError):
        last_json_document("no json here\n")


def test_a_section_s_json_is_kept_with_its_command(tmp_path: Path) -> None:
    body = "import sys, json\nprint('progress', file=sys.stderr)\nprint('table')\n"
    body += "print(json.dumps({'argv': sys.argv[1:]}, indent=2))\n"

    record = run_section(_section(tmp_path, body), quick=True, timeout_s=TIMEOUT_S, root=tmp_path)

    assert record["command"] == "python bench/fake.py --full --short --json"
    assert record["result"] == {"argv": ["--full", "--short", "--json"]}
    assert "error" not in record
    assert record["seconds"] >= 0


def test_a_failing_section_reports_its_last_stderr_line(tmp_path: Path) -> None:
    body = "import sys\nprint('Traceback ...', file=sys.stderr)\nprint('OSError: boom', file=sys.stderr)\n"
    body += "sys.exit(3)\n"

    record = run_section(_section(tmp_path, body), quick=False, timeout_s=TIMEOUT_S, root=tmp_path)

    assert record["error"] == "exited with status 3: OSError: boom"
    assert "result" not in record


def test_a_section_that_failed_part_way_keeps_its_result_too(tmp_path: Path) -> None:
    body = "import sys\nprint('{\"runs\": {}}')\nsys.exit(1)\n"

    record = run_section(_section(tmp_path, body), quick=False, timeout_s=TIMEOUT_S, root=tmp_path)

    assert record["result"] == {"runs": {}}
    assert record["error"].startswith("exited with status 1")


def test_a_section_without_json_fails(tmp_path: Path) -> None:
    record = run_section(
        _section(tmp_path, "print('hello')\n"), quick=False, timeout_s=TIMEOUT_S, root=tmp_path
    )

    assert record["error"].startswith("printed no JSON result")


def test_a_section_that_overruns_is_stopped(tmp_path: Path) -> None:
    body = "import time\ntime.sleep(60)\n"

    record = run_section(_section(tmp_path, body), quick=False, timeout_s=0.3, root=tmp_path)

    assert record["error"] == "ran past 0.3s and was stopped"
    assert record["seconds"] < TIMEOUT_S


def test_every_section_names_a_script_that_exists() -> None:
    bench = Path(__file__).resolve().parents[2] / "bench"
    for section in SECTIONS:
        assert (bench / section.script).is_file()
        assert section.argv(quick=False)[-1] == "--json"


def test_machine_description_reads_proc_files() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n") == "AMD EPYC 7B13"
    assert cpu_model("") == "unknown"
    assert memory_total("MemTotal:       24684100 kB\n") == "23.5 GiB"
    machine = describe_machine()
    assert {"CPUs (nproc)", "CPU model", "Memory", "Kernel", "Python", "nginx", "wrk"} <= set(machine)
