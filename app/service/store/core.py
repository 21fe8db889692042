"""The store's core: one SQLite connection, its lock, its migrations and its
thread.

Durable state in embedded SQLite: the cluster spec and its generation, the plan
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from app.service.store.schema import MIGRATIONS, SCHEMA_VERSION

P = ParamSpec("P")
T = TypeVar("T")


class StoreError(RuntimeError):
    """The database cannot be used; the message says why and what to do."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


class StoreCore:
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
            for k in range(version, SCHEMA_VERSION):
                # One script, one transaction: executescript() would commit a
                # transaction opened outside it.
                conn.executescript(
                    f"BEGIN IMMEDIATE; {MIGRATIONS[k]} PRAGMA user_version = {k + 1}; COMMIT;"
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

    def _prune_retained(
        self, table: str, time_col: str, keep: int, max_age_s: float, where: str = "1"
    ) -> int:
        """The retention rule of a `seq`-ordered table: of the rows matching `where`,
        delete those whose `time_col` (epoch s) is older than `max_age_s` and those
        beyond the newest `keep`. One transaction; returns the rows deleted."""

        def run(c: sqlite3.Connection) -> int:
            n = c.execute(
                f"DELETE FROM {table} WHERE {where} AND {time_col} < ?",
                (time.time() - max_age_s,),
            ).rowcount
            n += c.execute(
                f"DELETE FROM {table} WHERE {where} AND seq NOT IN "
                f"(SELECT seq FROM {table} WHERE {where} ORDER BY seq DESC LIMIT ?)",
                (keep,),
            ).rowcount
            return n

        return self._tx(run)
