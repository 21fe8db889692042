"""Audit records: request, state, result."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from app.service.store.core import StoreCore, dumps, utc_now

ACTIVE_AUDIT_STATES = ("queued", "running")


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


class AuditsRepo(StoreCore):
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
                (audit_id, now, time.time(), dumps(request), plan_version, observed_generation),
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
                (state, utc_now(), None if result is None else dumps(result), error, audit_id),
            )
        )

    def get_audit(self, audit_id: str) -> AuditRow | None:
        r = self.conn.execute(
            f"SELECT {self._AUDIT_COLS} FROM audits WHERE id = ?", (audit_id,)
        ).fetchone()
        return self._audit_row(r) if r else None

    def list_audits(
        self, limit: int, before_seq: int | None, plan_version: int | None = None
    ) -> list[tuple[int, AuditRow]]:
        """Newest first, before `before_seq`; of one plan version if given."""
        where, args = "seq < ?", [before_seq if before_seq is not None else 2**62]
        if plan_version is not None:
            where, args = f"{where} AND plan_version = ?", [*args, plan_version]
        rows = self.conn.execute(
            f"SELECT seq, {self._AUDIT_COLS} FROM audits WHERE {where} ORDER BY seq DESC LIMIT ?",
            (*args, limit),
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
        return self._prune_retained(
            "audits", "created_ts", keep, max_age_s, where="state NOT IN ('queued', 'running')"
        )
