"""The proxy benchmark's --chain and --compare-chain options, and the rows they plan."""

from __future__ import annotations

import pytest
from _chains import build_chain
from _options import parse_options
from _targets import plan_targets


def _labels(argv: list[str]) -> list[str]:
    opts = parse_options(argv)
    return [spec.label for spec in plan_targets(opts, build_chain(opts.chain), build_chain("none"))]


def test_default_is_turnout_without_filters_between_direct_and_nginx() -> None:
    opts = parse_options([])

    assert (opts.chain, opts.compare_chain) == ("none", False)
    assert _labels([]) == ["direct", "turnout", "nginx"]


def test_a_chain_renames_turnouts_row() -> None:
    assert _labels(["--chain", "typical"]) == ["direct", "turnout+typical", "nginx"]


def test_compare_chain_defaults_to_typical_and_measures_turnout_twice() -> None:
    opts = parse_options(["--compare-chain", "--targets", "turnout"])

    assert opts.chain == "typical"
    specs = plan_targets(opts, build_chain(opts.chain), build_chain("none"))
    assert [spec.label for spec in specs] == ["turnout", "turnout+typical"]
    assert [spec.kind for spec in specs] == ["turnout", "turnout"]
    assert specs[0].chain is not None and specs[0].chain.filters == ()
    assert specs[1].chain is not None and len(specs[1].chain.filters) == 3


def test_compare_chain_with_cache_hit() -> None:
    assert _labels(["--compare-chain", "--chain", "cache-hit"]) == [
        "direct",
        "turnout",
        "turnout+cache-hit",
        "nginx",
    ]


@pytest.mark.parametrize(
    "argv",
    [["--compare-chain", "--chain", "none"], ["--compare-chain", "--targets", "nginx"], ["--chain", "heavy"]],
)
def test_contradictory_or_unknown_choices_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_options(argv)
    assert exited.value.code == 2
