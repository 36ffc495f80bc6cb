"""bench/access_log_line.py: it times lines that really reach the file."""

from __future__ import annotations

import access_log_line


def test_measure_reports_a_cost_per_line_for_lines_all_written() -> None:
    per_line_us = access_log_line.measure(lines=500, rounds=2)

    # Anything from a tenth of a microsecond to a millisecond is a plausible line on a loaded
    # machine; zero or less would mean the clock or the division is wrong.
    assert 0.1 < per_line_us < 1000
