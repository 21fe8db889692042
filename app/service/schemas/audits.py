"""Schemas of /v1/audits."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from app.engine.contracts import ExactOptions

# strict: no bool-as-number or number-as-string coercion in what we define (the
# engine's scenario schemas keep pydantic's lax mode).
from app.service.schemas.common import (
    RESPONSE,
)


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
