"""The cluster spec and its generation (one row)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from app.service.store.core import StoreCore, StoreError, dumps, utc_now


@dataclass(frozen=True, slots=True)
class ClusterRow:
    generation: int
    spec: dict[str, Any]
    updated_at: str


class ClusterRepo(StoreCore):
    def load_cluster(self) -> ClusterRow | None:
        row = self.conn.execute("SELECT generation, spec, updated_at FROM cluster").fetchone()
        return ClusterRow(row[0], json.loads(row[1]), row[2]) if row else None

    def save_cluster(self, generation: int, spec: dict[str, Any], expected: int | None) -> str:
        """Write spec at `generation` if the stored generation is still `expected`
        (None: no row yet). Returns updated_at."""
        now = utc_now()
        text = dumps(spec)

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
