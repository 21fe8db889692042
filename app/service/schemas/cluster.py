"""Schemas of /v1/cluster: the spec, demand snapshots, GPU availability."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from app.engine.model.schemas import ScenarioSpec

# strict: no bool-as-number or number-as-string coercion in what we define (the
# engine's scenario schemas keep pydantic's lax mode).
from app.service.schemas.common import (
    MAX_QUERY_TYPES,
    REQUEST,
    RESPONSE,
    QueryTypePatch,
    _under,
)


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
