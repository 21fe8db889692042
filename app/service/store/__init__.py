"""Durable state in embedded SQLite: the cluster spec and its generation, the plan
history, audit records, idempotency keys (one module each over one connection,
`core.StoreCore`: its lock, migrations and thread)."""

from __future__ import annotations

from pathlib import Path

from app.service.store.audits import ACTIVE_AUDIT_STATES, AuditRow, AuditsRepo
from app.service.store.cluster import ClusterRepo, ClusterRow
from app.service.store.core import StoreError, utc_now
from app.service.store.idempotency import IdempotencyRepo, StoredResponse
from app.service.store.observations import DemandRow, ForecastRow, ObservationsRepo
from app.service.store.plans import PlanRow, PlansRepo
from app.service.store.schema import SCHEMA_VERSION

__all__ = [
    "ACTIVE_AUDIT_STATES",
    "SCHEMA_VERSION",
    "AuditRow",
    "ClusterRow",
    "DemandRow",
    "ForecastRow",
    "PlanRow",
    "Store",
    "StoreError",
    "StoredResponse",
    "check_database",
    "utc_now",
]


class Store(ClusterRepo, PlansRepo, AuditsRepo, IdempotencyRepo, ObservationsRepo):
    """The service's database: every method is one short transaction, run on the
    store's own thread through `call`."""


def check_database(path: Path) -> None:
    """Open and close the database once: raises StoreError if it is unusable (a
    missing directory, a corrupt or foreign file, one another process holds).
    `serve()` calls this before starting uvicorn so a bad database is a one-line
    error rather than a traceback."""
    store = Store(path)
    store.open()
    store.close()
