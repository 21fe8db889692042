"""Schemas of /v1/plan: the plan document, its solver account, analysis, diff,
conditions, versions and history."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    model_validator,
)

from app.engine.api import plan_of

# strict: no bool-as-number or number-as-string coercion in what we define (the
# engine's scenario schemas keep pydantic's lax mode).
from app.service.schemas.common import (
    MAX_QUERY_TYPES,
    REQUEST,
    RESPONSE,
)


class DeploymentDoc(BaseModel):
    model_config = REQUEST
    id: str | None = Field(default=None, examples=["Qwen2.5-7B@H100-SXM/bf16/tp1pp1"])
    model: str
    gpu: str
    precision: str
    tp: int = Field(ge=1, le=64)
    pp: int = Field(ge=1, le=64)
    replicas: int = Field(ge=0, le=1_000_000)
    gpus: int | None = Field(default=None, description="output only (tp*pp*replicas)")
    utilization: float | None = Field(default=None, description="output only")


class RouteDoc(BaseModel):
    model_config = REQUEST
    query_type: str
    deployment: str
    fraction: float = Field(ge=0.0, le=1.0)


class UnmetDoc(BaseModel):
    model_config = REQUEST
    query_type: str
    fraction: float = Field(ge=0.0, le=1.0)


class PlanDocument(BaseModel):
    """The engine's plan document. As input only the decisions (deployments,
    routing, unmet) count; cost, feasibility and violations are recomputed. A
    POST /v1/solve answer is accepted as its `plan` (as the CLI's plan files)."""

    model_config = REQUEST

    @model_validator(mode="before")
    @classmethod
    def _solve_answer(cls, v: Any) -> Any:
        return plan_of(v)

    deployments: list[DeploymentDoc] = Field(default_factory=list, max_length=100_000)
    routing: list[RouteDoc] = Field(default_factory=list, max_length=1_000_000)
    unmet: list[UnmetDoc] = Field(default_factory=list, max_length=MAX_QUERY_TYPES)
    cost: dict[str, float | None] | None = Field(default=None, description="output only")
    feasible: bool | None = Field(default=None, description="output only")
    violations: list[dict[str, Any]] | None = Field(default=None, description="output only")


class ImprovementInfo(BaseModel):
    """What a background improvement saved against the plan it replaced."""

    model_config = RESPONSE
    from_version: int = Field(description="the published plan it improved on")
    baseline_objective: float = Field(
        description="that plan's objective, $ per horizon, priced with itself live"
    )
    baseline_feasible: bool
    saving: float = Field(
        description="baseline_objective - objective (this plan's change cost included)"
    )
    threshold: float = Field(description="the saving it had to exceed")


class SolverCounters(BaseModel):
    """What a solve reports about its own run, in a plan's `solver` and in
    POST /v1/solve's answer."""

    model_config = RESPONSE
    bound_source: str | None = Field(
        default=None, description="milp (a full MILP's dual bound) | lp (the LP relaxation) | null"
    )
    wall_s: float | None = None
    time_to_best_s: float | None = Field(default=None, description="when the plan was found")
    iterations: int | None = None
    starts: int | None = Field(default=None, description="AGH starts made")
    warm_start_used: bool | None = Field(default=None, description="started from the live plan")
    seed: int | None = None
    time_budget_s: float | None = None
    candidates: int | None = Field(default=None, description="deployment candidates considered")


class SolverInfo(SolverCounters):
    """The solver's account of the plan. `termination` says why it stopped: gh
    `completed`; agh `converged` (a bound proves the plan optimal or its
    neighbourhood is exhausted), `completed` (its start limit, the deterministic
    mode), `deadline` (the budget ran out) or `stopped` (a newer generation stopped
    it: its best plan so far); milp `optimal`, `time_limit`, `infeasible`,
    `cancelled`, `error`. `bound` is the best proven lower bound on the objective the
    solve knows (the exact polish's full MILP or LP relaxation; null when none) and
    `gap` = (objective − bound) / objective, so every plan carries its certified gap."""

    model_config = RESPONSE
    source: Literal["replan", "improvement"] | None = Field(
        default=None,
        description="replan: the re-plan of a generation; improvement: a background "
        "improvement of the same generation's published plan (null: stored before "
        "this field existed)",
    )
    improvement: ImprovementInfo | None = None
    algorithm: str = Field(examples=["agh"])
    objective: float | None = None
    termination: str = Field(examples=["converged"])
    status: str | None = Field(
        default=None, description="optimal | feasible | infeasible | none", examples=["feasible"]
    )
    bound: float | None = Field(default=None, description="best proven lower bound, $")
    gap: float | None = Field(default=None, description="(objective - bound) / objective")
    warm_start_refused: str | None = Field(
        default=None,
        description="set when the live plan could not be read as the warm start: the "
        "re-plan started from scratch (why)",
    )


class DemandInfo(BaseModel):
    """A type's planned rate next to the latest observation (types with observed
    demand only)."""

    model_config = RESPONSE
    query_type: str
    planned_rps: float = Field(description="the rate the plan was made for (the spec's)")
    forecast_rps: float | None = Field(description="the latest forecast (before the dead band)")
    method: str | None = Field(description="the forecast method that made it")
    observed_rps: float = Field(description="the latest observed window's rate")
    observed_start: str
    observed_window_s: float


class Analysis(BaseModel):
    model_config = RESPONSE
    binding_constraints: list[dict[str, Any]] = Field(
        description="capacity/availability/accuracy/budget/storage constraints at their bound"
    )
    query_types: list[dict[str, Any]] = Field(description="how each query type is served")
    total_gpus: int | None = None
    gpus_by_type: dict[str, int] = Field(default_factory=dict)
    demand: list[DemandInfo] | None = Field(
        default=None,
        description="live plans only: planned vs latest observed rate per observed type",
    )


class PlanAction(BaseModel):
    model_config = RESPONSE
    op: Literal["create", "scale", "delete", "route", "unmet"]
    description: str
    deployment: str | None = None
    query_type: str | None = None
    from_replicas: int | None = None
    to_replicas: int | None = None
    gpus_delta: int | None = None
    model: str | None = None
    gpu: str | None = None
    precision: str | None = None
    tp: int | None = None
    pp: int | None = None
    from_fraction: float | None = None
    to_fraction: float | None = None


class PlanDiff(BaseModel):
    """Actions from the previous plan version to this one, in a safe order: create
    and scale up, then routing/unmet changes, then scale down and delete."""

    model_config = RESPONSE
    from_version: int | None
    actions: list[PlanAction]
    summary: dict[str, Any]


class Condition(BaseModel):
    model_config = RESPONSE
    type: Literal["Ready", "UpToDate", "Degraded", "SourcesHealthy"]
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(examples=["Reconciled"])
    message: str
    last_transition_time: str


class AuditSummary(BaseModel):
    model_config = RESPONSE
    id: str
    state: str
    certified_gap: float | None = None


class PlanStatus(BaseModel):
    """The live plan and the reconcile status. `plan` is null (and `status`
    "Pending") until the first plan exists."""

    model_config = RESPONSE
    version: int | None = Field(examples=[12])
    generation: int = Field(description="current generation of the cluster spec")
    observed_generation: int | None = Field(description="generation this plan was made for")
    status: Literal["Pending", "Reconciling", "Ready", "Degraded"]
    conditions: list[Condition]
    created_at: str | None
    plan: PlanDocument | None
    solver: SolverInfo | None
    analysis: Analysis | None
    diff: PlanDiff | None
    last_audit: AuditSummary | None = Field(
        default=None, description="latest finished audit of this plan version"
    )


class PlanVersion(BaseModel):
    model_config = RESPONSE
    version: int
    observed_generation: int
    created_at: str
    plan: PlanDocument
    solver: SolverInfo
    analysis: Analysis
    diff: PlanDiff
    spec: dict[str, Any] | None = Field(
        default=None, description="the scenario it was made for (?include_spec=true)"
    )


class PlanSummary(BaseModel):
    model_config = RESPONSE
    version: int
    observed_generation: int
    created_at: str
    cost_total: float | None
    feasible: bool
    gpus: int
    algorithm: str
    termination: str
    source: Literal["replan", "improvement"] | None = Field(
        default=None, description="see SolverInfo.source"
    )
    actions: int


class PlanHistoryPage(BaseModel):
    model_config = RESPONSE
    items: list[PlanSummary]
    next: str | None = Field(description="URL of the next (older) page, null at the end")


class BindingConstraint(BaseModel):
    model_config = RESPONSE
    constraint: str = Field(examples=["availability"])
    subject: str = Field(description="GPU type, query type or deployment; empty: fleet-wide")
    lhs: float
    rhs: float


class ViolationNote(BaseModel):
    model_config = RESPONSE
    constraint: str
    subject: str
    message: str


class RouteShare(BaseModel):
    model_config = RESPONSE
    deployment: str
    fraction: float


class CandidateCounts(BaseModel):
    """The type's candidate deployments: all of them, those that meet its SLOs,
    those that can serve it (SLOs met, a known error rate), and of these the ones
    within its accuracy bound."""

    model_config = RESPONSE
    total: int
    meet_slo: int
    feasible: int
    accurate_enough: int


class CheapCandidate(BaseModel):
    model_config = RESPONSE
    deployment: str
    cost_per_request: float = Field(description="$ per request at the policy's headroom")
    error_rate: float
    gpu: str
    max_concurrency: int
    used: bool = Field(description="the plan routes this type to it")


class TypeExplanation(BaseModel):
    model_config = RESPONSE
    query_type: str
    routes: list[RouteShare]
    unmet_fraction: float
    candidates: CandidateCounts
    cheapest_candidates: list[CheapCandidate] = Field(
        description="the (up to) three cheapest feasible candidates accurate enough"
    )
    reasons: list[str] = Field(description="why not the cheapest; whether accuracy binds")
    unmet_reasons: list[str] = Field(description="why demand is unmet, when it is")


class PlanExplanation(BaseModel):
    """Why the live plan is what it is (`app.engine.plan.explain`)."""

    model_config = RESPONSE
    version: int
    observed_generation: int
    feasible: bool
    cost: dict[str, float]
    binding_constraints: list[BindingConstraint]
    violations: list[ViolationNote]
    query_types: list[TypeExplanation]
