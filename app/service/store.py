"""Durable state in embedded SQLite: the cluster spec and its generation, the plan
history, audit records and idempotency keys.

Durability: WAL journal with `synchronous=FULL`, so a write is on disk when its
transaction commits; the service acknowledges a change only after that. Every
method is one short transaction. The methods are synchronous; the service calls
them through `Store.call`, which runs them on one dedicated thread so the event
loop never waits on an fsync and the connection is never shared between threads.

Startup refuses, with a message, a file that is not an SQLite database, a
database that fails `PRAGMA quick_check`, a database with a newer schema
(`PRAGMA user_version`) than this build knows, and a database file another
running service holds (an exclusive `flock` on the database file itself, so any
path to the same file finds it held).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

SCHEMA_VERSION = 1

_SCHEMA = """
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

ACTIVE_AUDIT_STATES = ("queued", "running")

P = ParamSpec("P")
T = TypeVar("T")


class StoreError(RuntimeError):
    """The database cannot be used; the message says why and what to do."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, slots=True)
class ClusterRow:
    generation: int
    spec: dict[str, Any]
    updated_at: str


@dataclass(frozen=True, slots=True)
class PlanRow:
    version: int
    observed_generation: int
    created_at: str
    spec: dict[str, Any]
    plan: dict[str, Any]
    solver: dict[str, Any]
    analysis: dict[str, Any]
    diff: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: str
    state: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    request: dict[str, Any]
    plan_version: int | None
    observed_generation: int | None
    result: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class StoredResponse:
    body_hash: str
    status: int
    headers: dict[str, str]
    body: bytes


class Store:
    """One SQLite connection, used from one thread (see `call`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._thread: ThreadPoolExecutor | None = None

    # -- lifecycle ---------------------------------------------------------------

    def open(self) -> None:
        """Open (creating if absent), check and migrate the database. Raises
        StoreError with a human-readable reason."""
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"directory {self.path.parent} for the database does not exist")
        self._acquire_lock()
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self._release_lock()
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:
            self._check_and_migrate(conn)
        except BaseException:
            conn.close()
            self._release_lock()
            raise
        self._conn = conn
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    def _acquire_lock(self) -> None:
        """Single writer: an exclusive `flock` on the database file itself (opened,
        and created if absent, for that purpose). A lock on the file, not on its
        name, holds whatever path reaches it: a symlink, `./x/../db`, a hard link.
        SQLite's own locks are POSIX record locks, independent of flock on Linux;
        the descriptor stays open until after the connection is closed (closing
        another descriptor of the file would drop SQLite's POSIX locks)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open database {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            real = os.path.realpath(self.path)
            raise StoreError(
                f"database {self.path} (that is, {real}) is in use by another "
                "llm-allocator process; stop it or choose another --db"
            ) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _check_and_migrate(self, conn: sqlite3.Connection) -> None:
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"database {self.path} is corrupt or not an SQLite database ({exc}); "
                "restore it from a backup or move it away to start empty"
            ) from exc
        if check != "ok":
            raise StoreError(
                f"database {self.path} failed its integrity check ({check}); "
                "restore it from a backup or move it away to start empty"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path} has schema version {version}, newer than this build "
                f"supports ({SCHEMA_VERSION}); run a newer llm-allocator or use another --db"
            )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            if version == 0:
                tables = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type='table'"
                ).fetchone()[0]
                if tables:
                    raise StoreError(
                        f"database {self.path} has tables but no llm-allocator schema version; "
                        "it belongs to something else"
                    )
                # One script, one transaction: executescript() would commit a
                # transaction opened outside it.
                conn.executescript(
                    f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"database {self.path} cannot be initialised: {exc}") from exc

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._release_lock()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is not open")
        return self._conn

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store method on the store's own thread."""
        if self._thread is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    def _tx(self, statements: Callable[[sqlite3.Connection], T]) -> T:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = statements(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    # -- cluster spec ------------------------------------------------------------

    def load_cluster(self) -> ClusterRow | None:
        row = self.conn.execute("SELECT generation, spec, updated_at FROM cluster").fetchone()
        return ClusterRow(row[0], json.loads(row[1]), row[2]) if row else None

    def save_cluster(self, generation: int, spec: dict[str, Any], expected: int | None) -> str:
        """Write spec at `generation` if the stored generation is still `expected`
        (None: no row yet). Returns updated_at."""
        now = utc_now()
        text = _dumps(spec)

        def run(c: sqlite3.Connection) -> str:
            if expected is None:
                c.execute(
                    "INSERT INTO cluster (id, generation, spec, updated_at) VALUES (1, ?, ?, ?)",
                    (generation, text, now),
                )
            else:
                cur = c.execute(
                    "UPDATE cluster SET generation=?, spec=?, updated_at=? WHERE generation=?",
                    (generation, text, now, expected),
                )
                if cur.rowcount != 1:
                    raise StoreError("cluster spec changed underneath (lost update prevented)")
            return now

        return self._tx(run)

    # -- plans ---------------------------------------------------------------------

    def insert_plan(
        self,
        observed_generation: int,
        spec: dict[str, Any],
        plan: dict[str, Any],
        solver: dict[str, Any],
        analysis: dict[str, Any],
        diff: dict[str, Any],
        keep: int,
    ) -> PlanRow:
        now = utc_now()

        def run(c: sqlite3.Connection) -> int:
            cur = c.execute(
                "INSERT INTO plans (observed_generation, created_at, spec, plan, solver, analysis,"
                " diff) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    observed_generation,
                    now,
                    _dumps(spec),
                    _dumps(plan),
                    _dumps(solver),
                    _dumps(analysis),
                    _dumps(diff),
                ),
            )
            version = int(cur.lastrowid or 0)
            c.execute("DELETE FROM plans WHERE version <= ?", (version - keep,))
            return version

        version = self._tx(run)
        return PlanRow(version, observed_generation, now, spec, plan, solver, analysis, diff)

    _PLAN_COLS = "version, observed_generation, created_at, spec, plan, solver, analysis, diff"

    @staticmethod
    def _plan_row(r: tuple[Any, ...]) -> PlanRow:
        return PlanRow(r[0], r[1], r[2], *(json.loads(x) for x in r[3:]))

    def latest_plan(self) -> PlanRow | None:
        r = self.conn.execute(
            f"SELECT {self._PLAN_COLS} FROM plans ORDER BY version DESC LIMIT 1"
        ).fetchone()
        return self._plan_row(r) if r else None

    def get_plan(self, version: int) -> PlanRow | None:
        r = self.conn.execute(
            f"SELECT {self._PLAN_COLS} FROM plans WHERE version = ?", (version,)
        ).fetchone()
        return self._plan_row(r) if r else None

    def list_plans(self, limit: int, before: int | None) -> list[PlanRow]:
        rows = self.conn.execute(
            f"SELECT {self._PLAN_COLS} FROM plans WHERE version < ? ORDER BY version DESC LIMIT ?",
            (before if before is not None else 2**62, limit),
        ).fetchall()
        return [self._plan_row(r) for r in rows]

    # -- audits --------------------------------------------------------------------

    _AUDIT_COLS = (
        "id, state, created_at, started_at, finished_at, request, plan_version,"
        " observed_generation, result, error"
    )

    @staticmethod
    def _audit_row(r: tuple[Any, ...]) -> AuditRow:
        return AuditRow(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            json.loads(r[5]),
            r[6],
            r[7],
            json.loads(r[8]) if r[8] is not None else None,
            r[9],
        )

    def insert_audit(
        self,
        audit_id: str,
        request: dict[str, Any],
        plan_version: int | None,
        observed_generation: int | None,
    ) -> AuditRow:
        now = utc_now()
        self._tx(
            lambda c: c.execute(
                "INSERT INTO audits (id, state, created_at, created_ts, request, plan_version,"
                " observed_generation) VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                (audit_id, now, time.time(), _dumps(request), plan_version, observed_generation),
            )
        )
        return AuditRow(
            audit_id,
            "queued",
            now,
            None,
            None,
            request,
            plan_version,
            observed_generation,
            None,
            None,
        )

    def mark_audit_running(self, audit_id: str) -> None:
        self._tx(
            lambda c: c.execute(
                "UPDATE audits SET state='running', started_at=? WHERE id=? AND state='queued'",
                (utc_now(), audit_id),
            )
        )

    def finish_audit(
        self, audit_id: str, state: str, result: dict[str, Any] | None, error: str | None
    ) -> None:
        self._tx(
            lambda c: c.execute(
                "UPDATE audits SET state=?, finished_at=?, result=?, error=? WHERE id=?",
                (state, utc_now(), None if result is None else _dumps(result), error, audit_id),
            )
        )

    def get_audit(self, audit_id: str) -> AuditRow | None:
        r = self.conn.execute(
            f"SELECT {self._AUDIT_COLS} FROM audits WHERE id = ?", (audit_id,)
        ).fetchone()
        return self._audit_row(r) if r else None

    def list_audits(self, limit: int, before_seq: int | None) -> list[tuple[int, AuditRow]]:
        rows = self.conn.execute(
            f"SELECT seq, {self._AUDIT_COLS} FROM audits WHERE seq < ? ORDER BY seq DESC LIMIT ?",
            (before_seq if before_seq is not None else 2**62, limit),
        ).fetchall()
        return [(r[0], self._audit_row(r[1:])) for r in rows]

    def latest_finished_audit(self, plan_version: int) -> AuditRow | None:
        r = self.conn.execute(
            f"SELECT {self._AUDIT_COLS} FROM audits WHERE plan_version = ? "
            "AND state = 'succeeded' ORDER BY seq DESC LIMIT 1",
            (plan_version,),
        ).fetchone()
        return self._audit_row(r) if r else None

    def audit_seq(self, audit_id: str) -> int | None:
        r = self.conn.execute("SELECT seq FROM audits WHERE id = ?", (audit_id,)).fetchone()
        return r[0] if r else None

    def count_audits_by_state(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, count(*) FROM audits GROUP BY state").fetchall()
        return {r[0]: r[1] for r in rows}

    def fail_interrupted_audits(self) -> int:
        """Audits queued or running when the process died cannot be resumed (their
        solver process died with it): mark them failed."""
        return self._tx(
            lambda c: (
                c.execute(
                    "UPDATE audits SET state='failed', finished_at=?, error=? "
                    "WHERE state IN ('queued', 'running')",
                    (utc_now(), "interrupted by restart"),
                ).rowcount
            )
        )

    def prune_audits(self, keep: int, max_age_s: float) -> int:
        """Drop finished audits beyond the newest `keep` or older than `max_age_s`.
        Queued and running audits are never pruned."""

        def run(c: sqlite3.Connection) -> int:
            n = c.execute(
                "DELETE FROM audits WHERE state NOT IN ('queued', 'running') AND created_ts < ?",
                (time.time() - max_age_s,),
            ).rowcount
            n += c.execute(
                "DELETE FROM audits WHERE state NOT IN ('queued', 'running') AND seq NOT IN "
                "(SELECT seq FROM audits WHERE state NOT IN ('queued', 'running') "
                "ORDER BY seq DESC LIMIT ?)",
                (keep,),
            ).rowcount
            return n

        return self._tx(run)

    # -- idempotency keys ------------------------------------------------------------

    def get_response(self, scope: str) -> StoredResponse | None:
        r = self.conn.execute(
            "SELECT body_hash, status, headers, body FROM idempotency "
            "WHERE scope = ? AND expires_ts > ?",
            (scope, time.time()),
        ).fetchone()
        return StoredResponse(r[0], r[1], json.loads(r[2]), bytes(r[3])) if r else None

    def put_response(self, scope: str, stored: StoredResponse, ttl_s: float) -> None:
        self._tx(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO idempotency (scope, body_hash, status, headers, body,"
                " expires_ts) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    scope,
                    stored.body_hash,
                    stored.status,
                    _dumps(stored.headers),
                    stored.body,
                    time.time() + ttl_s,
                ),
            )
        )

    def purge_expired_responses(self) -> int:
        return self._tx(
            lambda c: (
                c.execute("DELETE FROM idempotency WHERE expires_ts <= ?", (time.time(),)).rowcount
            )
        )


def check_database(path: Path) -> None:
    """Open and close the database once: raises StoreError if it is unusable (a
    missing directory, a corrupt or foreign file, one another process holds).
    `serve()` calls this before starting uvicorn so a bad database is a one-line
    error rather than a traceback."""
    store = Store(path)
    store.open()
    store.close()
