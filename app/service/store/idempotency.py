"""Stored first responses of POSTs with an Idempotency-Key."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from app.service.store.core import StoreCore, dumps


@dataclass(frozen=True, slots=True)
class StoredResponse:
    body_hash: str
    status: int
    headers: dict[str, str]
    body: bytes


class IdempotencyRepo(StoreCore):
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
                    dumps(stored.headers),
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
