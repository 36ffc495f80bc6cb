"""The recorder's write-ahead journal: groups of events in a file before they reach the store.

The recorder seals a group of events (every `flush_interval`, or as soon as `flush_events` are
queued) and appends it here with one `write` call, on the event loop, before the group is handed to
the store. A write to a file is in the operating system's hands once the call returns, so a process
killed with SIGKILL keeps every sealed group even when the store never got it; only the group still
filling is lost. On the next start the journal is replayed into the store under each group's batch
id, which the store applies at most once, and emptied once the store holds everything in it.

One line per group in JSON: `{"id": BATCH_ID, "e": [...], "o": [...], "f": [...]}`, each event of a
kind (exposure, outcome, feedback) as the list of its fields in declaration order: a store applies a
group's exposures before its feedback whatever their order, and field lists cost a third of what
named fields cost to write (about 0.5 µs an event, on the event loop). A line cut short
(the machine itself crashed mid-write) is skipped on replay. Only an operating-system crash can lose
sealed groups: the journal is not fsynced, as the SQLite store's own commits are not.

Several gateway processes may share one SQLite file, so each holds a journal of its own: `open`
takes the first of PATH, PATH.1, PATH.2, ... that no live process holds (an exclusive `flock`, which
the kernel releases when its holder dies, even by SIGKILL). It also takes every other such file left
by a process that died, so their groups are replayed too; those files are deleted once the store
holds their groups (`clear`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import operator
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from experiments.events import Event, Exposure, Feedback, Outcome, OutputSummary

_log = logging.getLogger(__name__)
_TAGS: dict[type[Any], str] = {Exposure: "e", Outcome: "o", Feedback: "f"}
_FIELDS = {cls: operator.attrgetter(*(f.name for f in dataclasses.fields(cls))) for cls in _TAGS}
# Where an outcome's model-output summaries and an exposure's segments sit in their field lists.
_OUTPUTS = [f.name for f in dataclasses.fields(Outcome)].index("outputs")
_SEGMENTS = [f.name for f in dataclasses.fields(Exposure)].index("segments")


def encode(batch_id: str, events: Sequence[Event]) -> bytes:
    """One journal line for a group."""
    columns: dict[str, list[Any]] = {"e": [], "o": [], "f": []}
    for event in events:
        columns[_TAGS[event.__class__]].append(_FIELDS[event.__class__](event))
    return orjson.dumps({"id": batch_id, **columns}) + b"\n"


def _outcome(fields: list[Any]) -> Outcome:
    fields[_OUTPUTS] = tuple(
        OutputSummary(o["output"], tuple(o.get("labels", ())), o.get("score")) for o in fields[_OUTPUTS]
    )
    return Outcome(*fields)


def _exposure(fields: list[Any]) -> Exposure:
    """An exposure from its field list; lines written before segments were recorded lack them."""
    if len(fields) > _SEGMENTS:
        fields[_SEGMENTS] = tuple((str(name), str(value)) for name, value in fields[_SEGMENTS])
    return Exposure(*fields)


def decode(line: bytes) -> tuple[str, list[Event]]:
    """The batch id and events of one journal line (ValueError, KeyError or TypeError if damaged)."""
    record = orjson.loads(line)
    events: list[Event] = [_exposure(fields) for fields in record["e"]]
    events += [_outcome(fields) for fields in record["o"]]
    events += [Feedback(*fields) for fields in record["f"]]
    return str(record["id"]), events


def _lock(path: Path) -> int | None:
    """An appending descriptor of `path` under this process's exclusive lock, or None when another
    live process holds it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _end_line(path: Path, fd: int) -> None:
    """End a line a crash cut short, so the next group starts a line of its own."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    with path.open("rb") as handle:
        handle.seek(size - 1)
        if handle.read(1) != b"\n":
            os.write(fd, b"\n")


class EventJournal:
    """An append-only file of sealed event groups (`open` before use, `close` after)."""

    def __init__(self, path: str | Path) -> None:
        self.base = Path(path)
        self.path = self.base
        """The file this process appends to (the base path, or a numbered sibling)."""
        self._fd: int | None = None
        self._orphans: dict[Path, int] = {}
        self._dirty = True  # what the file held before this process opened it is unknown

    def _siblings(self) -> list[Path]:
        numbered = self.base.parent.glob(self.base.name + ".*")
        return [self.base, *sorted(p for p in numbered if p.suffix[1:].isdigit())]

    def open(self) -> None:
        """Take a journal of this process's own, and the journals of processes that died."""
        if self._fd is not None:
            return
        self.base.parent.mkdir(parents=True, exist_ok=True)
        for slot in range(len(self._siblings()) + 1):
            path = self.base if slot == 0 else self.base.with_name(f"{self.base.name}.{slot}")
            fd = _lock(path)
            if fd is not None:
                self.path, self._fd = path, fd
                _end_line(path, fd)
                break
        for path in self._siblings():
            if path != self.path and path.exists() and (fd := _lock(path)) is not None:
                self._orphans[path] = fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        for orphan_fd in self._orphans.values():
            os.close(orphan_fd)
        self._orphans.clear()
        if fd is not None:
            os.close(fd)

    def append(self, batch_id: str, events: Sequence[Event]) -> bool:
        """Write one sealed group; False when the file cannot be written (the group then lives in
        memory only, as without a journal)."""
        if self._fd is None:
            return False
        line = encode(batch_id, events)
        self._dirty = True
        try:
            written = os.write(self._fd, line)
        except OSError:
            _log.warning("experiment events: the journal %s cannot be written", self.path, exc_info=True)
            return False
        return written == len(line)

    def clear(self) -> None:
        """Empty the journal (and delete dead processes' journals): the store holds every group."""
        if self._fd is not None and self._dirty:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            self._dirty = False
        for path, fd in self._orphans.items():
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)
        self._orphans.clear()

    def groups(self) -> Iterator[tuple[str, list[Event]]]:
        """The groups in this process's journal and in those of dead processes, each file oldest
        first; a damaged line is skipped."""
        for path in (self.path, *self._orphans):
            if path.exists():
                yield from _read(path)


def _read(path: Path) -> Iterator[tuple[str, list[Event]]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                yield decode(line)
            except (KeyError, TypeError, ValueError):  # orjson.JSONDecodeError is a ValueError
                _log.warning("experiment events: %s line %d is damaged; skipped", path.name, number)
