"""Waking the event loop at a deadline with sub-millisecond precision, for `max_queue_delay`.

The loop's own timers count whole milliseconds (uvloop's, and asyncio's epoll timeouts round up), and
the wake-up itself comes late on a busy or virtual machine: a batch due after 2 ms left after 2.1 to
2.2 ms, so a lone request waited longer than the configured bound. On Linux a timerfd armed at the
absolute deadline on CLOCK_MONOTONIC (the clock behind `time.monotonic`) fires at nanosecond
resolution; elsewhere the loop's `call_at` stands in. What lateness remains (the kernel's timer
slack, the wake-up, the loop's turn) is corrected by `WakeLead`: the lane arms its timer that much
before the deadline.

    timer = deadline_timer(loop, on_fire)   # re-armable; one per batch lane
    timer.arm(time.monotonic() + 0.002)
    timer.cancel()
    timer.close()                           # when the lane ends
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import time
from collections.abc import Callable
from typing import Final, Protocol

log = logging.getLogger("turnout.batching")

# From <sys/timerfd.h> and <time.h> (Linux).
_CLOCK_MONOTONIC: Final = 1
_TFD_TIMER_ABSTIME: Final = 1
_TFD_NONBLOCK: Final = os.O_NONBLOCK
_TFD_CLOEXEC: Final = os.O_CLOEXEC
_NS: Final = 1_000_000_000
# How much of each measured miss (seconds past the deadline, or before it) moves the lead: small
# enough that one late wake-up (a preempted CPU) barely moves it, large enough to settle within a
# few dozen batches.
LEAD_GAIN: Final = 0.2
# The most the lead may reach: a quarter of max_queue_delay, and never more than half a millisecond
# (a loop late by more than that is overloaded, and waking earlier would only shrink batches).
LEAD_CAP_S: Final = 0.0005
LEAD_CAP_SHARE: Final = 0.25


class DeadlineTimer(Protocol):
    def arm(self, deadline: float) -> None:
        """Fire once at `deadline` (time.monotonic() seconds), replacing any earlier arming."""
        ...

    def cancel(self) -> None: ...

    def close(self) -> None:
        """Release the timer for good; it never fires after this."""
        ...


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timerfd_libc() -> ctypes.CDLL | None:
    """libc when it has timerfd and `time.monotonic` reads CLOCK_MONOTONIC; otherwise None."""
    if "CLOCK_MONOTONIC" not in time.get_clock_info("monotonic").implementation:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        )
    except (OSError, AttributeError):
        return None
    return libc


_LIBC: Final = _timerfd_libc()


def _last_os_error(call: str) -> OSError:
    """The error of the libc call that just failed, from its errno."""
    errno = ctypes.get_errno()
    return OSError(errno, f"{call}: {os.strerror(errno)}")


class TimerFd:
    """A timerfd registered with the loop: `callback` runs in the loop when it fires."""

    __slots__ = ("_callback", "_fd", "_loop", "_spec")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        if _LIBC is None:
            raise OSError("timerfd is not available here")
        fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise _last_os_error("timerfd_create")
        self._fd = fd
        self._loop = loop
        self._callback = callback
        self._spec = _Itimerspec()
        loop.add_reader(fd, self._fired)

    def arm(self, deadline: float) -> None:
        # A deadline already past still fires (at once): a zero it_value would disarm instead.
        ns = max(int(deadline * _NS), 1)
        self._settime(ns // _NS, ns % _NS)

    def cancel(self) -> None:
        self._settime(0, 0)

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _settime(self, seconds: int, nanoseconds: int) -> None:
        if self._fd < 0 or _LIBC is None:
            return
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = seconds, nanoseconds
        if _LIBC.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            raise _last_os_error("timerfd_settime")

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count; reading it re-arms the fd's readiness
        except BlockingIOError:
            return  # cancelled or re-armed after the loop saw it readable
        self._callback()


class LoopTimer:
    """The loop's own timer, where timerfd is missing: whole milliseconds under uvloop."""

    __slots__ = ("_callback", "_closed", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._closed = False

    def arm(self, deadline: float) -> None:
        self.cancel()
        if self._closed:
            return
        delay = max(0.0, deadline - time.monotonic())
        self._handle = self._loop.call_at(self._loop.time() + delay, self._callback)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def close(self) -> None:
        self._closed = True
        self.cancel()


def deadline_timer(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> DeadlineTimer:
    """A timerfd where the platform has one, else the loop's timer."""
    if _LIBC is not None:
        try:
            return TimerFd(loop, callback)
        except OSError as exc:  # out of file descriptors, or a sandbox that forbids timerfd
            log.warning("batching: precise queue-delay timer unavailable (%s); using the loop's timer", exc)
    return LoopTimer(loop, callback)


class WakeLead:
    """How long before a deadline to arm its timer, learnt from how late the timer turns out.

    After each wake-up by the timer, `observe(now - deadline)` moves the lead by LEAD_GAIN of the
    miss: late wake-ups lengthen it, early ones shorten it, so on average the waiter resumes at the
    deadline itself (an integral controller on the miss). The lead stays within [0, cap].
    """

    __slots__ = ("cap", "seconds")

    def __init__(self, max_delay: float) -> None:
        self.cap = min(LEAD_CAP_S, LEAD_CAP_SHARE * max_delay)
        self.seconds = 0.0

    def observe(self, miss: float) -> None:
        self.seconds = min(self.cap, max(0.0, self.seconds + LEAD_GAIN * miss))
