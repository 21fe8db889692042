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

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)
