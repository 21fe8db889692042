"""The service's typed runtime state: what `create_app` makes (settings, metrics)
and what the lifespan owns while the app runs (the store, the control plane, the
solver pools, the reconciler, the audit manager). One object on `app.state`
instead of loose attributes, so every dependency has a type."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.service.audits import AuditManager
from app.service.demand import DemandLoop
from app.service.http import RouteTable
from app.service.latency import LatencyLoop
from app.service.metrics import Metrics
from app.service.pool import SolverPool
from app.service.reconcile import Reconciler
from app.service.settings import Settings
from app.service.sourcing import SourcesManager
from app.service.state import ControlPlane
from app.service.store import Store


@dataclass(slots=True)
class Running:
    """What exists between start-up and shutdown."""

    store: Store
    control_plane: ControlPlane
    audits: AuditManager
    whatif_pool: SolverPool
    reconciler: Reconciler
    demand: DemandLoop
    latency: LatencyLoop
    sources: SourcesManager


@dataclass(slots=True)
class Runtime:
    settings: Settings
    metrics: Metrics
    running: Running | None = None  # None before start-up and after shutdown
    stopping: bool = False  # shutdown under way: readiness says no
    whatif_busy: int = 0  # what-if solves in flight (admission)
    explained: dict[int, dict[str, object]] = field(default_factory=dict)
    routes: RouteTable = field(default_factory=RouteTable)  # every route of the app
