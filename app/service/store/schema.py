"""The database schema as a list of migrations: migration k (1-based) takes a
database from `PRAGMA user_version` k−1 to k. A new database runs them all; an
older one the ones it lacks, in one transaction each."""

from __future__ import annotations

_V1 = """
CREATE TABLE cluster (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  INTEGER NOT NULL,
    spec        TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE TABLE plans (
    version              INTEGER PRIMARY KEY,
    observed_generation  INTEGER NOT NULL,
    created_at           TEXT    NOT NULL,
    spec                 TEXT    NOT NULL,
    plan                 TEXT    NOT NULL,
    solver               TEXT    NOT NULL,
    analysis             TEXT    NOT NULL,
    diff                 TEXT    NOT NULL
);
CREATE TABLE audits (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    state        TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    created_ts   REAL    NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    request      TEXT    NOT NULL,
    plan_version INTEGER,
    observed_generation INTEGER,
    result       TEXT,
    error        TEXT
);
CREATE INDEX audits_state ON audits (state);
CREATE TABLE idempotency (
    scope       TEXT PRIMARY KEY,
    body_hash   TEXT NOT NULL,
    status      INTEGER NOT NULL,
    headers     TEXT NOT NULL,
    body        BLOB NOT NULL,
    expires_ts  REAL NOT NULL
);
"""


# v2: the explanation of each plan, computed in the solver process with the plan.
_V2 = """
ALTER TABLE plans ADD COLUMN explanation TEXT;
"""

# v3: the control loop's inputs and memory: demand observations (counts over
# windows, one row per type and window start), latency observations, the
# forecasts the plans were made for, and small documents (calibration, sources,
# poll cursors) by key.
_V3 = """
CREATE TABLE demand_observations (
    query_type          TEXT NOT NULL,
    start_s             REAL NOT NULL,
    window_s            REAL NOT NULL,
    requests            REAL NOT NULL,
    input_tokens_mean   REAL,
    output_tokens_mean  REAL,
    received_at         TEXT NOT NULL,
    PRIMARY KEY (query_type, start_s)
) WITHOUT ROWID;
CREATE TABLE latency_observations (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    observation  TEXT NOT NULL,
    start_s      REAL,
    received_ts  REAL NOT NULL
);
CREATE TABLE forecasts (
    query_type    TEXT NOT NULL,
    made_at_s     REAL NOT NULL,
    valid_from_s  REAL NOT NULL,
    valid_to_s    REAL NOT NULL,
    rate          REAL NOT NULL,
    method        TEXT NOT NULL,
    PRIMARY KEY (query_type, made_at_s)
) WITHOUT ROWID;
CREATE TABLE documents (
    key         TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)
