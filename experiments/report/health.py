"""The health banner: what must hold before any decision is trusted, one check per line.

The checks restate `experiments.verdict.check_health` (which the decision obeys) for a reader: a
sample ratio mismatch or units seen in two arms make the experiment unhealthy; fewer than the
burn-in units per arm keep it running. Two more lines inform without blocking: a chi-square that
flags the split at this one look while the sequential test does not (a report is read again and
again, and only the sequential test stays valid under that), the forced or excluded traffic left
out of the analysis, and stored values that are not finite (written by an older version) left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from experiments.finite import MAX_MAGNITUDE
from experiments.report.model import HealthBanner, HealthCheck
from experiments.stats.srm import DEFAULT_SRM_ALPHA
from experiments.status import ArmReport, Health, SrmReport
from experiments.verdict import MAX_CROSSOVER_SHARE


def _shares(shares: Mapping[str, float]) -> str:
    return ", ".join(f"{arm} {share:.1%}" for arm, share in shares.items())


def _srm_check(srm: SrmReport | None) -> HealthCheck:
    name = "sample ratio"
    if srm is None:
        return HealthCheck(name, "note", "not checked: fewer than two arms have units")
    observed = ", ".join(f"{arm} {units}" for arm, units in srm.observed.items())
    tests = f"chi-square p = {srm.p_value:.3g}, sequential p = {srm.p_value_sequential:.3g}"
    if srm.mismatch:
        return HealthCheck(
            name,
            "blocking",
            f"sample ratio mismatch: units {observed} against shares {_shares(srm.expected_shares)} "
            f"({tests}; flagged at p <= {DEFAULT_SRM_ALPHA:g})",
        )
    if srm.p_value <= DEFAULT_SRM_ALPHA:
        return HealthCheck(
            name,
            "warning",
            f"units {observed}: the chi-square flags this look ({tests}), the sequential test, valid "
            "however often the report is read, does not yet",
        )
    return HealthCheck(name, "ok", f"units {observed} match shares {_shares(srm.expected_shares)} ({tests})")


def _size_check(arms: Sequence[ArmReport], burn_in: int) -> HealthCheck:
    name = "sample size"
    compared = [arm for arm in arms if arm.expected_share > 0.0]
    if not compared:
        return HealthCheck(name, "blocking", "no arm receives traffic in this phase")
    fewest = min(compared, key=lambda arm: arm.units)
    if fewest.units < burn_in:
        return HealthCheck(
            name,
            "blocking",
            f"too few units: {fewest.arm} has {fewest.units}; no decision before {burn_in} units per arm",
        )
    return HealthCheck(name, "ok", f"every arm has at least {burn_in} units (fewest: {fewest.units})")


def _crossover_check(crossovers: int, units: int) -> HealthCheck:
    name = "crossovers"
    if crossovers > MAX_CROSSOVER_SHARE * max(units, 1):
        return HealthCheck(
            name,
            "blocking",
            f"{crossovers} of {units} units were seen in more than one arm (over "
            f"{MAX_CROSSOVER_SHARE:.0%}): assignment is not sticky",
        )
    if crossovers > 0:
        return HealthCheck(name, "warning", f"{crossovers} of {units} units were seen in more than one arm")
    return HealthCheck(name, "ok", "no unit was seen in more than one arm")


def _left_out_check(forced: int, excluded: int) -> HealthCheck:
    name = "forced and excluded traffic"
    if forced == 0 and excluded == 0:
        return HealthCheck(name, "ok", "every exposure was randomised")
    return HealthCheck(
        name,
        "note",
        f"{forced} forced exposures (a caller named the arm) and {excluded} excluded exposures (outside "
        "the test, paused or ended) are left out of the analysis",
    )


def _stored_data_check(unusable: Sequence[str], unusable_rows: int) -> HealthCheck:
    name = "stored values"
    lines = list(unusable)
    if unusable_rows:
        lines.append(
            f"{unusable_rows} raw feedback values are missing, not finite or beyond ±{MAX_MAGNITUDE:g}, "
            "and are left out of the plots"
        )
    if not lines:
        return HealthCheck(name, "ok", "every stored value can be analysed")
    return HealthCheck(name, "warning", "; ".join(lines))


def health_banner(
    health: Health, arms: Sequence[ArmReport], burn_in: int, unusable_rows: int = 0
) -> HealthBanner:
    """The banner; `unusable_rows` counts raw feedback rows the plots left out (not finite)."""
    units = sum(arm.units for arm in arms if arm.expected_share > 0.0)
    checks = (
        _srm_check(health.srm),
        _size_check(arms, burn_in),
        _crossover_check(health.crossovers, units),
        _left_out_check(health.forced, health.excluded),
        _stored_data_check(health.unusable, unusable_rows),
    )
    ok = not any(check.level == "blocking" for check in checks)
    return HealthBanner(ok, checks, health.srm, health.crossovers, health.forced, health.excluded)
