"""The API's request and response schemas, one module per resource.

Request bodies are strict (`extra="forbid"`, finite numbers); the scenario parts
reuse the engine's own schemas (`app.engine.model.schemas`) so the field names
cannot drift, and the solver options are the engine's `SolverOptions`. Response
bodies that carry engine documents (plans, solver results, evaluations) allow extra
keys: the engine may add fields and clients should ignore what they do not know.
Responses are built as these models (validated), not as loose dicts.
"""

from app.service.schemas.audits import Audit, AuditCreate, AuditPage
from app.service.schemas.cluster import (
    Accepted,
    AvailabilityUpdate,
    ClusterReplace,
    ClusterResource,
    DemandUpdate,
)
from app.service.schemas.common import MAX_PERF_CASES, MAX_QUERY_TYPES, QueryTypePatch
from app.service.schemas.health import Health
from app.service.schemas.perf import PerfCase, PerfRequest, PerfResponse, Prediction
from app.service.schemas.plans import (
    Analysis,
    AuditSummary,
    Condition,
    DeploymentDoc,
    PlanAction,
    PlanDiff,
    PlanDocument,
    PlanHistoryPage,
    PlanStatus,
    PlanSummary,
    PlanVersion,
    RouteDoc,
    SolverInfo,
    UnmetDoc,
)
from app.service.schemas.solve import SolveRequest, SolveResponse

__all__ = [
    "MAX_PERF_CASES",
    "MAX_QUERY_TYPES",
    "Accepted",
    "Analysis",
    "Audit",
    "AuditCreate",
    "AuditPage",
    "AuditSummary",
    "AvailabilityUpdate",
    "ClusterReplace",
    "ClusterResource",
    "Condition",
    "DemandUpdate",
    "DeploymentDoc",
    "Health",
    "PerfCase",
    "PerfRequest",
    "PerfResponse",
    "PlanAction",
    "PlanDiff",
    "PlanDocument",
    "PlanHistoryPage",
    "PlanStatus",
    "PlanSummary",
    "PlanVersion",
    "Prediction",
    "QueryTypePatch",
    "RouteDoc",
    "SolveRequest",
    "SolveResponse",
    "SolverInfo",
    "UnmetDoc",
]
