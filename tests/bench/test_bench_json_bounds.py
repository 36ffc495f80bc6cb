"""bench/json_bounds.py: one row per body, the bounded reader timed against orjson's."""

from __future__ import annotations

import pytest
from json_bounds import main


def test_every_body_gets_a_row_with_both_timings(capsys: pytest.CaptureFixture[str]) -> None:
    rows = main(["--runs", "1"])

    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| Body | Size |") and len(table) == 2 + len(rows) == 7
    for name, size, plain, bounded in rows:
        assert size > 0 and plain > 0 and bounded > 0
        assert any(line.startswith(f"| {name} | {size:,} B |") for line in table)
