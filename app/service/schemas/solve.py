"""Schemas of POST /v1/solve (what-if)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from app.engine.contracts import SolverOptions
from app.engine.model.schemas import ScenarioSpec

# strict: no bool-as-number or number-as-string coercion in what we define (the
# engine's scenario schemas keep pydantic's lax mode).
from app.service.schemas.common import (
    RESPONSE,
    _under,
)
from app.service.schemas.plans import (
    Analysis,
    PlanDocument,
    SolverCounters,
)


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


class SolveResponse(SolverCounters):
    """The solve result (the engine's `SolveResult` document) and its analysis."""

    model_config = RESPONSE
    algorithm: str
    termination: str
    status: Literal["optimal", "feasible", "infeasible", "none"]
    objective: float | None
    bound: float | None = Field(default=None, description="best proven lower bound known")
    gap: float | None = Field(default=None, description="(objective - bound) / objective")
    plan: PlanDocument
    analysis: Analysis
