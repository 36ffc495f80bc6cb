"""bench/filter_cost.py --scenario deployed: every row writes the access log, as the deployed
gateway does, and the row without it gives the log's cost."""

from __future__ import annotations


def test_the_deployed_rows_log_and_the_extra_row_does_not() -> None:
    from _results_md import _filters_section

    result = {
        "data_path": "compiled",
        "us_per_request": {"none": 24.0, "auth_jwt": 30.5, "no_access_log": 20.0},
    }

    table = "\n".join(_filters_section(result))

    assert "| none | 24.00 | - |" in table
    assert "| + auth_jwt | 30.50 | +6.50 |" in table
    assert "| no filters, no access log | 20.00 | -4.00 |" in table
    assert "no_access_log" not in table
