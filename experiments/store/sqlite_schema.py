"""The SQLite event store's tables and its upserts (each adds a batch's increments to running sums)."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS exposures (id INTEGER PRIMARY KEY, experiment TEXT, phase INTEGER, arm TEXT,
    unit_id TEXT, request_id TEXT, time REAL, forced INTEGER, excluded INTEGER);
CREATE INDEX IF NOT EXISTS exposures_by_request ON exposures (request_id);
CREATE TABLE IF NOT EXISTS outcomes (id INTEGER PRIMARY KEY, request_id TEXT, experiment TEXT,
    phase INTEGER, arm TEXT, unit_id TEXT, time REAL, latency_s REAL, status INTEGER, error INTEGER,
    response_bytes INTEGER, outputs TEXT, forced INTEGER, excluded INTEGER);
CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY, metric TEXT, value REAL, time REAL,
    request_id TEXT, unit_id TEXT, experiment TEXT, matched INTEGER);
CREATE TABLE IF NOT EXISTS unit_latest (experiment TEXT, unit_id TEXT, phase INTEGER, arm TEXT,
    analyzed INTEGER, PRIMARY KEY (experiment, unit_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS unit_latest_by_unit ON unit_latest (unit_id);
CREATE TABLE IF NOT EXISTS moments (experiment TEXT, phase INTEGER, arm TEXT, metric TEXT,
    count REAL, total REAL, total_sq REAL, PRIMARY KEY (experiment, phase, arm, metric)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS histograms (experiment TEXT, phase INTEGER, arm TEXT, bucket INTEGER,
    count INTEGER, PRIMARY KEY (experiment, phase, arm, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS labels (experiment TEXT, phase INTEGER, arm TEXT, output TEXT, label TEXT,
    count INTEGER, PRIMARY KEY (experiment, phase, arm, output, label)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (experiment TEXT, phase INTEGER, name TEXT, value REAL,
    PRIMARY KEY (experiment, phase, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unit_totals (experiment TEXT, phase INTEGER, arm TEXT, unit_id TEXT,
    counter TEXT, value REAL, PRIMARY KEY (experiment, phase, arm, unit_id, counter)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unit_arms (experiment TEXT, phase INTEGER, unit_id TEXT, arm TEXT,
    PRIMARY KEY (experiment, phase, unit_id, arm)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unit_sums (experiment TEXT, phase INTEGER, arm TEXT, key TEXT, value REAL,
    PRIMARY KEY (experiment, phase, arm, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS states (key TEXT PRIMARY KEY, revision INTEGER, payload TEXT);
CREATE TABLE IF NOT EXISTS decisions (id INTEGER PRIMARY KEY, experiment TEXT, time REAL, phase INTEGER,
    action TEXT, payload TEXT);
CREATE INDEX IF NOT EXISTS decisions_by_experiment ON decisions (experiment, id);
CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, time REAL) WITHOUT ROWID;
"""

# Columns added after the first release, as (table, column, how to fill rows written before it):
# an older file gains them when it is opened. Exposures written before exposure ids were named by
# their request id, so that id becomes their exposure id and their feedback keeps joining; exposures
# written before segments were recorded have none.
ADDED_COLUMNS = (
    ("exposures", "exposure_id", "UPDATE exposures SET exposure_id = request_id"),
    ("feedback", "exposure_id", "UPDATE feedback SET exposure_id = request_id"),
    ("exposures", "segments", "UPDATE exposures SET segments = ''"),
)
# Indexes on added columns, created once the columns exist.
ADDED_INDEXES = "CREATE INDEX IF NOT EXISTS exposures_by_exposure ON exposures (exposure_id);"

ADD_COUNTER = (
    "INSERT INTO counters VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET value = value + excluded.value"
)
ADD_MOMENT = (
    "INSERT INTO moments VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
    "count = count + excluded.count, total = total + excluded.total, total_sq = total_sq + excluded.total_sq"
)
ADD_HISTOGRAM = (
    "INSERT INTO histograms VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET count = count + excluded.count"
)
ADD_LABEL = (
    "INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET count = count + excluded.count"
)
ADD_UNIT_SUM = (
    "INSERT INTO unit_sums VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET value = value + excluded.value"
)
ADD_UNIT_TOTAL = (
    "INSERT INTO unit_totals VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT DO UPDATE SET value = value + excluded.value RETURNING value"
)
SET_LATEST = (
    "INSERT INTO unit_latest VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET phase = excluded.phase, "
    "arm = excluded.arm, analyzed = excluded.analyzed WHERE excluded.phase >= unit_latest.phase"
)
SAVE_STATE = (
    "INSERT INTO states VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET revision = excluded.revision, "
    "payload = excluded.payload WHERE excluded.revision > states.revision"
)
