"""The batch lanes' deadline timers (timerfd on Linux, the loop's timer elsewhere) and the wake lead.

No test here asserts how precise a timer is (that is the batching benchmark's job, on a quiet
machine); they assert what a timer does: fire once, after re-arming only for the last deadline,
never after cancel or close. Order is checked against a second timer, not against a clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from plugins.batching import deadline
from plugins.batching.deadline import LEAD_CAP_S, DeadlineTimer, LoopTimer, TimerFd, WakeLead

TimerFactory = Callable[[asyncio.AbstractEventLoop, Callable[[], None]], DeadlineTimer]
FACTORIES = [
    pytest.param(
        TimerFd,
        id="timerfd",
        marks=pytest.mark.skipif(deadline._LIBC is None, reason="no timerfd on this platform"),
    ),
    pytest.param(LoopTimer, id="loop"),
]
# Far beyond any timer lateness, even on a loaded 2-core machine: only for waiting, never asserted.
PATIENCE_S = 5.0


class Fired:
    """Counts a timer's firings and lets a test await the next one."""

    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()


async def after(make: TimerFactory, seconds: float) -> None:
    """Wait for another timer of the same kind armed `seconds` from now: a barrier in timer order."""
    fired = Fired()
    barrier = make(asyncio.get_running_loop(), fired)
    barrier.arm(time.monotonic() + seconds)
    try:
        await asyncio.wait_for(fired.event.wait(), PATIENCE_S)
    finally:
        barrier.close()


@pytest.fixture(params=FACTORIES)
async def timer(request: pytest.FixtureRequest) -> AsyncIterator[tuple[DeadlineTimer, Fired, TimerFactory]]:
    """A timer of each kind, its firing counter, and its kind (for barriers); closed afterwards."""
    make: TimerFactory = request.param
    fired = Fired()
    made = make(asyncio.get_running_loop(), fired)
    yield made, fired, make
    made.close()


async def test_a_timer_fires_once_at_its_deadline(timer: tuple[DeadlineTimer, Fired, TimerFactory]) -> None:
    made, fired, make = timer
    armed = time.monotonic()
    made.arm(armed + 0.005)
    await asyncio.wait_for(fired.event.wait(), PATIENCE_S)
    assert time.monotonic() >= armed + 0.005 - 0.001  # not early (1 ms for clock granularity)
    await after(make, 0.02)
    assert fired.count == 1


async def test_re_arming_replaces_the_deadline_and_cancel_disarms(
    timer: tuple[DeadlineTimer, Fired, TimerFactory],
) -> None:
    made, fired, make = timer
    made.arm(time.monotonic() + 60)  # replaced before it could fire
    made.arm(time.monotonic() + 0.005)
    await asyncio.wait_for(fired.event.wait(), PATIENCE_S)
    made.arm(time.monotonic() + 0.005)
    made.cancel()
    await after(make, 0.03)
    assert fired.count == 1


async def test_a_deadline_already_past_fires_at_once_and_a_closed_timer_never(
    timer: tuple[DeadlineTimer, Fired, TimerFactory],
) -> None:
    made, fired, make = timer
    made.arm(time.monotonic() - 1.0)
    await asyncio.wait_for(fired.event.wait(), PATIENCE_S)
    made.arm(time.monotonic() + 0.005)
    made.close()
    made.close()  # twice is harmless
    made.arm(time.monotonic())  # and so is arming a closed timer: it stays silent
    await after(make, 0.03)
    assert fired.count == 1


def test_the_lead_follows_the_misses_within_its_cap() -> None:
    lead = WakeLead(max_delay=0.002)
    assert lead.cap == LEAD_CAP_S  # a quarter of 2 ms is the 0.5 ms ceiling itself
    for _ in range(200):  # every wake-up 100 us late: the lead settles at 100 us...
        lead.observe(0.0001 - lead.seconds)
    assert lead.seconds == pytest.approx(0.0001, rel=1e-3)
    for _ in range(200):  # ...however late the loop, never beyond the cap...
        lead.observe(0.01)
    assert lead.seconds == lead.cap
    for _ in range(200):  # ...and waking early brings it back down, to zero at the least.
        lead.observe(-0.01)
    assert lead.seconds == 0.0


def test_the_lead_is_at_most_a_quarter_of_a_short_delay() -> None:
    assert WakeLead(max_delay=0.0004).cap == pytest.approx(0.0001)
    assert WakeLead(max_delay=0.0).cap == 0.0
