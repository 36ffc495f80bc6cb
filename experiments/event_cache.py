"""The raw events an experiment's status needs, kept between status requests and read incrementally.

`status_of` looks at every event of the phase (always-valid p-values over every look, quantiles
over units, CUPED, segments), so without a cache each admin API request reads the whole raw history:
on a store of a million events that read takes seconds. An `EventCache` keeps one
`experiments.event_reader.EventReader` per experiment and phase, with the store's cursor of the
last row read of each kind; a request reads only the rows stored since (`EventStore.export_rows_after`)
and rebuilds the arrays from what the reader holds. Results equal a full read's, except that feedback
joined by unit id goes to the unit's latest exposure when it was read, which is the exposure the
store joined it to.

One cache per store, held by whoever serves the status (the gateway's experiments service). A lock
keeps two requests from feeding one reader at once. A reader for an earlier phase of the experiment
is dropped when a later phase is asked for: a canary's status moves on with its steps.
"""

from __future__ import annotations

import asyncio

from experiments.analysis_events import ExperimentEvents
from experiments.event_reader import EventReader
from experiments.store.base import EVENT_KINDS, EventKind, EventStore


class _Cursor:
    __slots__ = ("positions", "reader")

    def __init__(self, reader: EventReader) -> None:
        self.reader = reader
        self.positions: dict[EventKind, str] = dict.fromkeys(EVENT_KINDS, "")


class EventCache:
    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._cursors: dict[tuple[str, int], _Cursor] = {}
        self._lock = asyncio.Lock()

    async def events(self, experiment: str, phase: int) -> ExperimentEvents:
        """The phase's events, reading only what was stored since the last call."""
        async with self._lock:
            cursor = self._cursors.get((experiment, phase))
            if cursor is None:
                for key in [key for key in self._cursors if key[0] == experiment and key[1] < phase]:
                    del self._cursors[key]
                cursor = self._cursors[experiment, phase] = _Cursor(EventReader(experiment, phase))
            batches = {}
            for kind in EVENT_KINDS:
                rows, cursor.positions[kind] = await self._store.export_rows_after(
                    experiment, kind, cursor.positions[kind]
                )
                batches[kind] = rows
            cursor.reader.add(batches["exposures"], batches["outcomes"], batches["feedback"])
            return cursor.reader.build()

    def forget(self, experiment: str) -> None:
        """Drop what is held for `experiment` (retired, or its config changed)."""
        for key in [key for key in self._cursors if key[0] == experiment]:
            del self._cursors[key]
