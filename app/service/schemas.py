"""The API's request and response schemas.

Request bodies are strict (`extra="forbid"`, finite numbers); the scenario parts
reuse the engine's own schemas (`app.engine.model.schemas`) so the field names cannot
drift. Response bodies that carry engine documents (plans, solver results,
evaluations) allow extra keys: the engine may add fields and clients should ignore
what they do not know.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
    model_validator,
)

from app.engine.contracts import ExactOptions, SolverOptions
from app.engine.errors import ScenarioError
from app.engine.model.schemas import GPUSpec, ModelSpec, PrecisionSpec, QueryTypeSpec, ScenarioSpec

# strict: no bool-as-number or number-as-string coercion in what we define (the
# engine's scenario schemas keep pydantic's lax mode).
REQUEST = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
RESPONSE = ConfigDict(extra="allow")

# Hard schema caps; the configured limits (settings) may only be lower.
MAX_PERF_CASES = 1024
MAX_QUERY_TYPES = 10_000


def _under(prefix: str, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """ScenarioSpec raises ScenarioError (not a ValueError, so it escapes pydantic)
    for cross-field problems such as duplicate ids; put the scenario's place in the
    request body in front of the field it names."""
    try:
        return handler(v)
    except ScenarioError as exc:
        raise ScenarioError(f"{prefix}.{exc.field}", exc.message) from None


def _patch_model(base: type[BaseModel], name: str, keep: set[str]) -> type[BaseModel]:
    """`base` with every field but `keep` optional (default None), same constraints:
    a partial update names only what changes."""
    fields: dict[str, Any] = {}
    for fname, info in base.model_fields.items():
        if fname in keep:
            fields[fname] = (info.annotation, info)
            continue
        optional = copy.copy(info)
        optional.default = None
        optional.default_factory = None
        annotation: Any = info.annotation
        fields[fname] = (annotation | None, optional)
    model: type[BaseModel] = create_model(name, __config__=REQUEST, **fields)
    model.__doc__ = (
        f"A {base.__name__} in which only `{', '.join(sorted(keep))}` is required; in merge "
        "mode the fields given replace those of the existing entry with the same id."
    )
    return model


QueryTypePatch = _patch_model(QueryTypeSpec, "QueryTypePatch", {"id"})


# ----------------------------------------------------------------- cluster ----


class ClusterReplace(BaseModel):
    """A whole new cluster spec (PUT /v1/cluster)."""

    model_config = REQUEST
    spec: ScenarioSpec

    @field_validator("spec", mode="wrap")
    @classmethod
    def _name_field(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _under("spec", v, handler)


class DemandUpdate(BaseModel):
    """A demand snapshot. `replace`: the query types become exactly `query_types`
    (each complete). `merge`: each entry updates the query type with the same id
    (only the fields given) or adds a new one (then complete); ids in `remove`
    are dropped."""

    model_config = REQUEST
    mode: Literal["replace", "merge"] = Field(examples=["merge"])
    query_types: list[QueryTypePatch] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=MAX_QUERY_TYPES,
        examples=[[{"id": "code", "arrival_rate": 31.5}]],
    )
    remove: list[str] = Field(default_factory=list, max_length=MAX_QUERY_TYPES)

    @model_validator(mode="after")
    def _consistent(self) -> DemandUpdate:
        if self.mode == "replace" and self.remove:
            raise ValueError("remove is only meaningful with mode 'merge'")
        if self.mode == "merge" and not self.query_types and not self.remove:
            raise ValueError("nothing to merge: give query_types or remove")
        return self


NonNegativeInt = Annotated[int, Field(ge=0, le=10_000_000)]
Price = Annotated[float, Field(ge=0.0, le=1_000_000.0)]


class AvailabilityUpdate(BaseModel):
    """GPU availability (GPUs that may be rented now) and optional price changes,
    keyed by GPU id of the cluster spec. GPU types not named keep their values."""

    model_config = REQUEST
    available: dict[str, NonNegativeInt] = Field(
        default_factory=dict, examples=[{"H100-SXM": 16, "L4": 40}]
    )
    price_per_hour: dict[str, Price] = Field(default_factory=dict, examples=[{"L4": 0.55}])

    @model_validator(mode="after")
    def _not_empty(self) -> AvailabilityUpdate:
        if not self.available and not self.price_per_hour:
            raise ValueError("give available and/or price_per_hour")
        return self


class ClusterResource(BaseModel):
    model_config = RESPONSE
    spec: dict[str, Any] = Field(description="the scenario document, defaults filled in")
    generation: int = Field(examples=[7])
    updated_at: str = Field(examples=["2026-01-05T10:00:00.000Z"])


class Accepted(BaseModel):
    model_config = RESPONSE
    generation: int = Field(description="generation of the spec after this change", examples=[8])
    changed: bool = Field(description="false if the update left the spec as it was")
    plan_url: str = Field(
        description="long-poll this to get the plan for this generation",
        examples=["/v1/plan?wait_for_generation=8&timeout_s=30"],
    )


# ------------------------------------------------------------------- plans ----


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
    routing, unmet) count; cost, feasibility and violations are recomputed."""

    model_config = REQUEST
    deployments: list[DeploymentDoc] = Field(default_factory=list, max_length=100_000)
    routing: list[RouteDoc] = Field(default_factory=list, max_length=1_000_000)
    unmet: list[UnmetDoc] = Field(default_factory=list, max_length=MAX_QUERY_TYPES)
    cost: dict[str, float | None] | None = Field(default=None, description="output only")
    feasible: bool | None = Field(default=None, description="output only")
    violations: list[dict[str, Any]] | None = Field(default=None, description="output only")


class SolverInfo(BaseModel):
    model_config = RESPONSE
    algorithm: str = Field(examples=["agh"])
    objective: float | None = None
    termination: str = Field(examples=["converged"])
    wall_s: float | None = None
    time_to_best_s: float | None = None
    iterations: int | None = None
    starts: int | None = None
    warm_start_used: bool | None = None
    seed: int | None = None
    time_budget_s: float | None = None
    candidates: int | None = None


class Analysis(BaseModel):
    model_config = RESPONSE
    binding_constraints: list[dict[str, Any]] = Field(
        description="capacity/availability/accuracy/budget/storage constraints at their bound"
    )
    query_types: list[dict[str, Any]] = Field(description="how each query type is served")
    total_gpus: int | None = None
    gpus_by_type: dict[str, int] = Field(default_factory=dict)


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
    type: Literal["Ready", "UpToDate", "Degraded"]
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
    actions: int


class PlanHistoryPage(BaseModel):
    model_config = RESPONSE
    items: list[PlanSummary]
    next: str | None = Field(description="URL of the next (older) page, null at the end")


# ------------------------------------------------------------------- solve ----


class SolveRequest(SolverOptions):
    """A what-if solve: nothing is stored. The solver options are the engine's
    one `SolverOptions` schema (`algorithm`, `time_budget_s`, `seed`, …)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)
    scenario: ScenarioSpec
    current_plan: PlanDocument | None = Field(
        default=None, description="live plan: warm start and change cost"
    )

    @field_validator("scenario", mode="wrap")
    @classmethod
    def _name_field(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _under("scenario", v, handler)

    def options(self) -> SolverOptions:
        return SolverOptions.model_validate(self.model_dump(include=_OPTION_FIELDS))


_OPTION_FIELDS = set(SolverOptions.model_fields)


class SolveResponse(BaseModel):
    """The solve result (the engine's `SolveResult` document) and its analysis."""

    model_config = RESPONSE
    algorithm: str
    termination: str
    status: Literal["optimal", "feasible", "infeasible", "none"]
    objective: float | None
    bound: float | None = Field(default=None, description="best proven lower bound known")
    gap: float | None = Field(default=None, description="(objective - bound) / objective")
    plan: PlanDocument
    wall_s: float | None = None
    analysis: Analysis


# ------------------------------------------------------------------ audits ----


class AuditCreate(ExactOptions):
    """An exact MILP audit of a plan version (default: the live plan) against the
    spec it was made for. The solver options are the engine's `ExactOptions`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)
    time_limit_s: float | None = Field(
        default=None, gt=0.0, le=86_400.0, description="default: the service setting"
    )
    plan_version: int | None = Field(
        default=None, ge=1, le=2**62, description="default: the live plan"
    )


class Audit(BaseModel):
    model_config = RESPONSE
    id: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    request: dict[str, Any]
    plan_version: int | None
    observed_generation: int | None
    cancel_requested: bool = False
    certified_gap: float | None = Field(
        description="(plan objective - proven bound) / plan objective, when known"
    )
    result: dict[str, Any] | None = Field(description="the engine's audit document")
    error: str | None


class AuditPage(BaseModel):
    model_config = RESPONSE
    items: list[Audit]
    next: str | None


# -------------------------------------------------------------------- perf ----


def _id_or_inline(v: Any) -> str:
    return "catalog_id" if isinstance(v, str) else "inline"


ModelRef = Annotated[
    Annotated[str, Tag("catalog_id")] | Annotated[ModelSpec, Tag("inline")],
    Discriminator(_id_or_inline),
]
GPURef = Annotated[
    Annotated[str, Tag("catalog_id")] | Annotated[GPUSpec, Tag("inline")],
    Discriminator(_id_or_inline),
]
PrecisionRef = Annotated[
    Annotated[str, Tag("catalog_id")] | Annotated[PrecisionSpec, Tag("inline")],
    Discriminator(_id_or_inline),
]


class PerfCase(BaseModel):
    model_config = REQUEST
    model: ModelRef = Field(
        description="catalog id or an inline ModelSpec", examples=["Llama-3.1-8B"]
    )
    gpu: GPURef = Field(description="catalog id or an inline GPUSpec", examples=["H100-SXM"])
    precision: PrecisionRef = Field(
        description="bf16, fp8, int8, int4 or an inline PrecisionSpec", examples=["bf16"]
    )
    tp: int = Field(default=1, ge=1, le=64)
    pp: int = Field(default=1, ge=1, le=64)
    input_tokens: float = Field(gt=0.0, le=10_000_000.0, examples=[1024])
    output_tokens: float = Field(gt=0.0, le=10_000_000.0, examples=[256])
    concurrency: int = Field(default=1, ge=1, le=1_000_000, examples=[8])


class PerfRequest(BaseModel):
    model_config = REQUEST
    cases: list[PerfCase] = Field(min_length=1, max_length=MAX_PERF_CASES)


class Prediction(BaseModel):
    """One case's prediction, or `error` if the case is impossible (precision not
    supported on the GPU, TP beyond a node, ...)."""

    model_config = RESPONSE
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    throughput_rps: float | None = None
    max_concurrency: int | None = None
    fits: bool | None = None
    error: str | None = None


class PerfResponse(BaseModel):
    model_config = RESPONSE
    predictions: list[Prediction]


# ------------------------------------------------------------------ health ----


class Health(BaseModel):
    model_config = RESPONSE
    status: Literal["ok", "not ready"]
    checks: dict[str, str] = Field(default_factory=dict)
