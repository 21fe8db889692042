"""The plan history: every published plan with the spec it was made for."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from app.service.store.core import StoreCore, dumps, utc_now


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
    explanation: dict[str, Any] | None = None  # None: made before explanations were stored


class PlansRepo(StoreCore):
    def insert_plan(
        self,
        observed_generation: int,
        spec: dict[str, Any],
        plan: dict[str, Any],
        solver: dict[str, Any],
        analysis: dict[str, Any],
        diff: dict[str, Any],
        keep: int,
        explanation: dict[str, Any] | None = None,
    ) -> PlanRow:
        now = utc_now()

        def run(c: sqlite3.Connection) -> int:
            cur = c.execute(
                "INSERT INTO plans (observed_generation, created_at, spec, plan, solver, analysis,"
                " diff, explanation) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    observed_generation,
                    now,
                    dumps(spec),
                    dumps(plan),
                    dumps(solver),
                    dumps(analysis),
                    dumps(diff),
                    None if explanation is None else dumps(explanation),
                ),
            )
            version = int(cur.lastrowid or 0)
            c.execute("DELETE FROM plans WHERE version <= ?", (version - keep,))
            return version

        version = self._tx(run)
        return PlanRow(
            version, observed_generation, now, spec, plan, solver, analysis, diff, explanation
        )

    _PLAN_COLS = (
        "version, observed_generation, created_at, spec, plan, solver, analysis, diff, explanation"
    )

    @staticmethod
    def _plan_row(r: tuple[Any, ...]) -> PlanRow:
        spec, plan, solver, analysis, diff = (json.loads(x) for x in r[3:8])
        explanation = json.loads(r[8]) if r[8] is not None else None
        return PlanRow(r[0], r[1], r[2], spec, plan, solver, analysis, diff, explanation)

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
