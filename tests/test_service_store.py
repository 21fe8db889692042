"""The SQLite store: refusal of unusable databases, retention, expiry."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT

from app.service.store import SCHEMA_VERSION, Store, StoredResponse, StoreError
from app.service.store.schema import MIGRATIONS


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A new store, open for the test."""
    s = Store(tmp_path / "a.db")
    s.open()
    yield s
    s.close()


def test_creates_schema_with_wal_and_full_sync(store: Store) -> None:
    conn = store.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_migrates_an_older_database_in_place(tmp_path: Path) -> None:
    """A database written by the first release (schema 1) opens, is migrated, and
    keeps its rows; a plan stored before explanations were kept has none."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"BEGIN; {MIGRATIONS[0]} PRAGMA user_version = 1; COMMIT;")
    conn.execute(
        "INSERT INTO plans (observed_generation, created_at, spec, plan, solver, analysis, diff)"
        " VALUES (1, 't', '{}', '{\"deployments\": []}', '{}', '{}', '{}')"
    )
    conn.close()
    store = Store(path)
    store.open()
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        row = store.latest_plan()
        assert row is not None and row.plan == {"deployments": []} and row.explanation is None
    finally:
        store.close()


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is not a database at all" * 200)


def _newer(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_corrupt, "corrupt or not an SQLite database"),
        (_newer, "schema version 99, newer"),
        (_foreign, "belongs to something else"),
    ],
    ids=["corrupt", "newer-schema", "foreign"],
)
def test_refuses_an_unusable_database(
    tmp_path: Path, make: Callable[[Path], None], reason: str
) -> None:
    path = tmp_path / "x.db"
    make(path)
    with pytest.raises(StoreError, match=reason):
        Store(path).open()


def test_refuses_a_database_in_use(tmp_path: Path) -> None:
    first = Store(tmp_path / "a.db")
    first.open()
    try:
        with pytest.raises(StoreError, match="in use by another"):
            Store(tmp_path / "a.db").open()
    finally:
        first.close()
    second = Store(tmp_path / "a.db")
    second.open()  # released on close
    second.close()


@pytest.mark.parametrize("alias", ["symlink", "dotdot", "hardlink"])
def test_the_lock_holds_whatever_path_reaches_the_file(tmp_path: Path, alias: str) -> None:
    """Issue #13 §4: the single-writer lock was keyed on the path string, so a
    symlink (or ./x/../db) to a database another server holds started a second
    server."""
    real = tmp_path / "a.db"
    (tmp_path / "x").mkdir()
    first = Store(real)
    first.open()
    try:
        if alias == "symlink":
            other = tmp_path / "link.db"
            other.symlink_to(real)
        elif alias == "hardlink":
            other = tmp_path / "hard.db"
            other.hardlink_to(real)
        else:
            other = tmp_path / "x" / ".." / "a.db"
        with pytest.raises(StoreError, match="in use by another"):
            Store(other).open()
    finally:
        first.close()


def test_serve_exits_with_a_message_when_the_directory_is_missing(tmp_path: Path) -> None:
    code = (
        "from app.service.server import serve; "
        f"serve(port=0, db={str(tmp_path / 'no' / 'such' / 'dir.db')!r})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0, out.stderr  # one line, no traceback
    assert "does not exist" in out.stderr


def test_serve_exits_with_a_message_on_a_corrupt_database(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"garbage" * 1000)
    code = f"from app.service.server import serve; serve(port=0, db={str(path)!r})"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert "error: database" in out.stderr and "corrupt" in out.stderr
    assert "Traceback" not in out.stderr


def test_plans_pruned_and_paged(store: Store) -> None:
    for g in range(1, 8):
        store.insert_plan(g, {}, {"g": g}, {}, {}, {"actions": []}, keep=5)
    versions = [r.version for r in store.list_plans(100, None)]
    assert versions == [7, 6, 5, 4, 3]
    assert [r.version for r in store.list_plans(2, 6)] == [5, 4]
    assert store.latest_plan().plan == {"g": 7}  # type: ignore[union-attr]
    assert store.get_plan(1) is None


def test_audits_interrupted_and_retention(store: Store) -> None:
    store.insert_audit("a1", {}, None, 1)
    store.insert_audit("a2", {}, None, 1)
    store.mark_audit_running("a2")
    for k in range(5):
        store.insert_audit(f"f{k}", {}, None, 1)
        store.finish_audit(f"f{k}", "succeeded", {"x": k}, None)
    assert store.fail_interrupted_audits() == 2
    a2 = store.get_audit("a2")
    assert a2 is not None and a2.state == "failed" and a2.error == "interrupted by restart"
    store.insert_audit("q", {}, None, 1)  # queued: never pruned
    store.prune_audits(keep=3, max_age_s=3600)
    left = {r.id for _, r in store.list_audits(100, None)}
    assert left == {"q", "f4", "f3", "f2"}  # the newest 3 finished + the queued one
    store.prune_audits(keep=100, max_age_s=0)  # everything finished is too old
    assert {r.id for _, r in store.list_audits(100, None)} == {"q"}


def test_audits_of_one_plan_version_page_newest_first(store: Store) -> None:
    for k, version in enumerate([1, 2, 1, 2, 1]):
        store.insert_audit(f"a{k}", {}, version, 1)
    ones = store.list_audits(2, None, plan_version=1)
    assert [r.id for _, r in ones] == ["a4", "a2"]
    rest = store.list_audits(2, ones[-1][0], plan_version=1)
    assert [r.id for _, r in rest] == ["a0"]
    assert [r.id for _, r in store.list_audits(10, None, plan_version=3)] == []
    assert len(store.list_audits(10, None)) == 5


def test_latency_observations_retention(store: Store) -> None:
    assert store.insert_latency(({"n": k}, None) for k in range(5)) == 5
    assert store.prune_latency(keep=3, max_age_s=3600) == 2
    assert [doc["n"] for _, doc in store.latency_observations()] == [2, 3, 4]
    assert store.prune_latency(keep=100, max_age_s=0) == 3  # all too old
    assert store.latency_observations() == []


def test_idempotency_keys_expire(store: Store) -> None:
    store.put_response("k1", StoredResponse("h", 202, {"location": "/x"}, b"{}"), ttl_s=60)
    store.put_response("k2", StoredResponse("h", 202, {}, b"{}"), ttl_s=0.01)
    time.sleep(0.05)
    got = store.get_response("k1")
    assert got is not None and got.headers == {"location": "/x"} and got.status == 202
    assert store.get_response("k2") is None
    assert store.purge_expired_responses() == 1
