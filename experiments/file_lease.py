"""The leader lease of the gateway processes of one host that share a SQLite store.

`turnout run --processes N` runs N gateways on one event store, and each would run the canary
controller: N controllers stepping the same canary N times per tick. The lease is an exclusive
`flock` on a file beside the store, taken without waiting: one process holds it, the others find it
taken and only follow the stored state. The kernel drops the lock when its holder exits or dies
(SIGKILL included), so another process takes it on its next tick, well within the lease time of a
Redis lease. The file holds the holder's pid and owner id, for an operator to read.
"""

from __future__ import annotations

import contextlib
import fcntl
import os


class FileLease:
    def __init__(self, path: str, owner: str) -> None:
        self.owner = owner
        self._path = path
        self._fd: int | None = None

    async def acquire(self) -> bool:
        """Take the lock if it is free (never waits); True while this process holds it. Opening a
        local file and a non-blocking flock take microseconds, so this stays on the event loop."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # the store's directory went away: not holding is the safe answer
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.owner}\n".encode(), 0)
        self._fd = fd
        return True

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
