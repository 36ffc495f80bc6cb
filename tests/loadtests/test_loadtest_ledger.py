"""The unit ledger: sticky violations (A/B) and ramp reversals (canary)."""

from __future__ import annotations

from loadtests.ledger import EXAMPLE_LIMIT, UnitLedger


def test_units_that_keep_their_arm_are_not_violations() -> None:
    ledger = UnitLedger()
    for _ in range(3):
        ledger.record("u1", "control")
        ledger.record("u2", "treatment")
    ledger.record("u3", "control")
    report = ledger.report()
    assert report.units == 3
    assert report.revisited_units == 2
    assert report.mixed_units == 0
    assert report.units_by_first_arm == {"control": 2, "treatment": 1}


def test_a_unit_seen_in_two_arms_is_one_violation_however_often() -> None:
    ledger = UnitLedger()
    for arm in ("control", "treatment", "control", "treatment"):
        ledger.record("flaky", arm)
    ledger.record("steady", "control")
    report = ledger.report()
    assert report.mixed_units == 1
    assert report.mixed_examples == ("flaky",)
    # Counted under the arm it saw first.
    assert report.units_by_first_arm == {"control": 2}


def test_examples_are_the_first_offenders_and_bounded() -> None:
    ledger = UnitLedger()
    for index in range(EXAMPLE_LIMIT + 5):
        ledger.record(f"u{index}", "control")
        ledger.record(f"u{index}", "treatment")
    report = ledger.report()
    assert report.mixed_units == EXAMPLE_LIMIT + 5
    assert report.mixed_examples == tuple(f"u{index}" for index in range(EXAMPLE_LIMIT))


def test_moving_towards_the_forward_arm_is_not_a_reversal_but_moving_back_is() -> None:
    ledger = UnitLedger(forward_arm="candidate")
    ledger.record("promoted", "baseline")
    ledger.record("promoted", "candidate")
    ledger.record("promoted", "candidate")
    ledger.record("rolled-back", "candidate")
    ledger.record("rolled-back", "baseline")
    report = ledger.report()
    assert report.reversed_units == 1
    assert report.reversed_examples == ("rolled-back",)
    # Both moved, so both are mixed; a canary's summary reads reversals instead.
    assert report.mixed_units == 2


def test_without_a_forward_arm_no_reversal_is_counted() -> None:
    ledger = UnitLedger()
    ledger.record("u", "candidate")
    ledger.record("u", "baseline")
    assert ledger.report().reversed_units == 0
