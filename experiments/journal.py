"""The recorder's write-ahead journal: groups of events in a file before they reach the store.

The recorder seals a group of events (every `flush_interval`, or as soon as `flush_events` are
queued) and appends it here with one `write` call, on the event loop, before the group is handed to
the store. A write to a file is in the operating system's hands once the call returns, so a process
killed with SIGKILL keeps every sealed group even when the store never got it; only the group still
filling is lost. On the next start the journal is replayed into the store under each group's batch
id, which the store applies at most once, and emptied once the store holds everything in it.

One line per group: `{"id": BATCH_ID, "events": [[KIND, FIELDS], ...]}` in JSON. A line cut short
(the machine itself crashed mid-write) is skipped on replay. Only an operating-system crash can lose
sealed groups: the journal is not fsynced, as the SQLite store's own commits are not.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from experiments.events import Event, Exposure, Feedback, Outcome, OutputSummary

_log = logging.getLogger(__name__)
_KINDS: dict[type[Any], str] = {Exposure: "e", Outcome: "o", Feedback: "f"}


def _decode(kind: str, fields: dict[str, Any]) -> Event:
    if kind == "e":
        return Exposure(**fields)
    if kind == "f":
        return Feedback(**fields)
    outputs = tuple(
        OutputSummary(o["output"], tuple(o.get("labels", ())), o.get("score"))
        for o in fields.pop("outputs", ())
    )
    return Outcome(**fields, outputs=outputs)


class EventJournal:
    """An append-only file of sealed event groups (`open` before use, `close` after)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def open(self) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def append(self, batch_id: str, events: Sequence[Event]) -> bool:
        """Write one sealed group; False when the file cannot be written (the group then lives in
        memory only, as without a journal)."""
        if self._fd is None:
            return False
        line = orjson.dumps({"id": batch_id, "events": [(_KINDS[type(e)], e) for e in events]}) + b"\n"
        try:
            written = os.write(self._fd, line)
        except OSError:
            _log.warning("experiment events: the journal %s cannot be written", self.path, exc_info=True)
            return False
        return written == len(line)

    def clear(self) -> None:
        """Empty the journal: the store holds every group written to it."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)

    def groups(self) -> Iterator[tuple[str, list[Event]]]:
        """The groups in the file, oldest first; a damaged line is skipped."""
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    record = orjson.loads(line)
                    yield str(record["id"]), [_decode(kind, fields) for kind, fields in record["events"]]
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    _log.warning("experiment events: journal line %d is damaged; skipped", number)
