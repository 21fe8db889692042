"""What the control loop observes and remembers: demand counts over windows (same
type and window start replaces), latency observations, the forecasts plans were
made for, and small documents by key (calibration, sources, poll cursors).
Retention is bounded: callers prune by age (observation time, not wall clock)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.engine.api import DemandObservation
from app.service.store.core import StoreCore, dumps, utc_now

# A demand row is the engine's `DemandObservation` (one window of one type).
DemandRow = DemandObservation


@dataclass(frozen=True, slots=True)
class ForecastRow:
    query_type: str
    made_at_s: float
    valid_from_s: float
    valid_to_s: float
    rate: float
    method: str


class ObservationsRepo(StoreCore):
    def upsert_demand(self, rows: Sequence[DemandRow]) -> int:
        """Store demand windows (replacing any with the same type and start) in one
        transaction. Returns how many replaced an existing window."""
        now = utc_now()

        def run(c: sqlite3.Connection) -> int:
            replaced = 0
            for r in rows:
                hit = c.execute(
                    "SELECT 1 FROM demand_observations WHERE query_type = ? AND start_s = ?",
                    (r.query_type, r.start_s),
                ).fetchone()
                replaced += hit is not None
                c.execute(
                    "INSERT OR REPLACE INTO demand_observations (query_type, start_s, window_s,"
                    " requests, input_tokens_mean, output_tokens_mean, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.query_type,
                        r.start_s,
                        r.window_s,
                        r.requests,
                        r.input_tokens_mean,
                        r.output_tokens_mean,
                        now,
                    ),
                )
            return replaced

        return self._tx(run)

    def demand_since(self, since_s: float) -> list[DemandRow]:
        rows = self.conn.execute(
            "SELECT query_type, start_s, window_s, requests, input_tokens_mean,"
            " output_tokens_mean FROM demand_observations WHERE start_s >= ?"
            " ORDER BY query_type, start_s",
            (since_s,),
        ).fetchall()
        return [DemandRow(*r) for r in rows]

    def demand_overlapping(
        self, spans: Mapping[str, tuple[float, float]], max_window_s: float
    ) -> list[DemandRow]:
        """Per query type, the stored windows that overlap [from_s, to_s) (every
        stored window is at most `max_window_s` long, which bounds the index scan)."""
        out: list[DemandRow] = []
        for query_type, (from_s, to_s) in spans.items():
            rows = self.conn.execute(
                "SELECT query_type, start_s, window_s, requests, input_tokens_mean,"
                " output_tokens_mean FROM demand_observations WHERE query_type = ?"
                " AND start_s > ? AND start_s < ? AND start_s + window_s > ? ORDER BY start_s",
                (query_type, from_s - max_window_s, to_s, from_s),
            ).fetchall()
            out += [DemandRow(*r) for r in rows]
        return out

    def prune_demand(self, before_s: float) -> int:
        return self._tx(
            lambda c: (
                c.execute("DELETE FROM demand_observations WHERE start_s < ?", (before_s,)).rowcount
            )
        )

    def insert_latency(self, observations: Iterable[tuple[dict[str, Any], float | None]]) -> int:
        now = time.time()
        rows = [(dumps(doc), start, now) for doc, start in observations]
        self._tx(
            lambda c: c.executemany(
                "INSERT INTO latency_observations (observation, start_s, received_ts)"
                " VALUES (?, ?, ?)",
                rows,
            )
        )
        return len(rows)

    def latency_observations(self) -> list[tuple[int, dict[str, Any]]]:
        """(sequence number, observation) in the order they arrived."""
        rows = self.conn.execute(
            "SELECT seq, observation FROM latency_observations ORDER BY seq"
        ).fetchall()
        return [(int(r[0]), json.loads(r[1])) for r in rows]

    def prune_latency(self, keep: int, max_age_s: float) -> int:
        """Keep the newest `keep` latency observations received within `max_age_s`."""
        return self._prune_retained("latency_observations", "received_ts", keep, max_age_s)

    def record_forecasts(self, rows: Sequence[ForecastRow]) -> None:
        self._tx(
            lambda c: c.executemany(
                "INSERT OR REPLACE INTO forecasts (query_type, made_at_s, valid_from_s,"
                " valid_to_s, rate, method) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.query_type, r.made_at_s, r.valid_from_s, r.valid_to_s, r.rate, r.method)
                    for r in rows
                ],
            )
        )

    def forecasts_since(self, since_s: float) -> list[ForecastRow]:
        rows = self.conn.execute(
            "SELECT query_type, made_at_s, valid_from_s, valid_to_s, rate, method FROM forecasts"
            " WHERE valid_to_s >= ? ORDER BY query_type, made_at_s",
            (since_s,),
        ).fetchall()
        return [ForecastRow(*r) for r in rows]

    def prune_forecasts(self, before_s: float) -> int:
        return self._tx(
            lambda c: c.execute("DELETE FROM forecasts WHERE valid_to_s < ?", (before_s,)).rowcount
        )

    def get_document(self, key: str) -> dict[str, Any] | None:
        r = self.conn.execute("SELECT document FROM documents WHERE key = ?", (key,)).fetchone()
        return json.loads(r[0]) if r else None

    def put_document(self, key: str, doc: dict[str, Any]) -> None:
        self._tx(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO documents (key, document, updated_at) VALUES (?, ?, ?)",
                (key, dumps(doc), utc_now()),
            )
        )
