"""Schemas of the control loop's inputs and outputs: demand observations
(`POST /v1/observations/demand`), the forecast (`GET /v1/forecast`) and the
evaluation of a plan against a demand (`POST /v1/evaluate`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.engine.api import DemandObservation
from app.engine.model.schemas import MAX_RATE, MAX_TOKENS, Id, ScenarioSpec
from app.service.schemas.common import REQUEST, RESPONSE, Rfc3339
from app.service.schemas.plans import PlanDocument

MAX_OBSERVATIONS = 100_000
MAX_WINDOW_S = 86_400.0


class DemandObservationIn(BaseModel):
    """Requests of one query type counted over one window (a gateway log line, or
    Prometheus `increase(...[window])` evaluated at the window's end)."""

    model_config = REQUEST
    query_type: Id = Field(examples=["code"])
    start: Rfc3339 = Field(
        description="window start, RFC 3339 with a time zone",
        examples=["2026-12-01T10:00:00Z"],
        strict=False,  # a JSON string, parsed (strict mode would want a datetime object)
    )
    window_s: float = Field(gt=0.0, le=MAX_WINDOW_S, examples=[60])
    requests: float = Field(ge=0.0, le=MAX_RATE * 86_400.0, examples=[1668])
    input_tokens_mean: float | None = Field(default=None, gt=0.0, le=MAX_TOKENS)
    output_tokens_mean: float | None = Field(default=None, gt=0.0, le=MAX_TOKENS)

    def domain(self) -> DemandObservation:
        """The engine's observation (time as epoch seconds)."""
        return DemandObservation(
            self.query_type,
            self.start.timestamp(),  # in UTC (Rfc3339)
            self.window_s,
            self.requests,
            self.input_tokens_mean,
            self.output_tokens_mean,
        )


class DemandObservations(BaseModel):
    model_config = REQUEST
    observations: list[DemandObservationIn] = Field(min_length=1, max_length=MAX_OBSERVATIONS)


class ObservationsAccepted(BaseModel):
    model_config = RESPONSE
    accepted: int = Field(description="windows stored")
    replaced: int = Field(description="of which replaced a window with the same type and start")
    ignored: int = Field(
        description="windows not stored because they are older than the service keeps "
        "(they would have no effect); see `ignored_reason`"
    )
    ignored_reason: str | None = Field(description="why windows were ignored (null: none were)")
    changed: bool = Field(description="the planned demand changed (a re-plan is under way)")
    generation: int = Field(description="generation of the spec after this ingestion")
    data_time: str | None = Field(description="end of the newest observed window")
    plan_url: str
    forecast_url: str


class ForecastInfo(BaseModel):
    model_config = RESPONSE
    rate_rps: float
    quantile: float
    method: str
    points: int
    note: str


class ObservedWindow(BaseModel):
    model_config = RESPONSE
    start: str
    window_s: float
    requests: float
    rate_rps: float


class Coverage(BaseModel):
    model_config = RESPONSE
    windows: int = Field(description="observed windows that ran under an applied forecast")
    above_planned: int
    share_at_or_below: float | None = Field(description="to compare with `target`")
    target: float


class TypeForecastOut(BaseModel):
    model_config = RESPONSE
    query_type: str
    planned_rps: float = Field(description="the rate the spec (and the plan) carries")
    source: str = Field(description="forecast (observed) or declared (no observations)")
    forecast: ForecastInfo | None
    last_observation: ObservedWindow | None
    coverage: Coverage


class ForecastReport(BaseModel):
    model_config = RESPONSE
    data_time: str | None
    method: str
    quantile: float
    replan_interval_s: float
    actuation_delay_s: float
    query_types: list[TypeForecastOut]


class EvaluateRequest(BaseModel):
    """Does a fleet hold under a demand? `scenario` defaults to the live spec,
    `plan` to the live plan; `demand` overrides arrival rates by query type."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    scenario: ScenarioSpec | None = None
    plan: PlanDocument | None = None
    demand: dict[Id, float] | None = Field(
        default=None, description="query type -> arrival rate (req/s)", examples=[{"code": 40.0}]
    )
    delay_factor: float = Field(
        default=1.0, ge=0.1, le=10.0, description="latency x this, in `stress` only"
    )
    error_factor: float = Field(
        default=1.0, ge=0.1, le=10.0, description="error rates x this, in `stress` only"
    )
    demand_factor: float = Field(
        default=1.0,
        ge=0.1,
        le=10.0,
        description="demand x this with the plan held as it is: the outcome is in `stress` "
        "(violation_share, unmet_rps, realised_cost); `feasible` and `violations` judge the "
        "plan at the unstressed rates (use `demand` to judge it at other rates)",
    )


class EvaluateResponse(BaseModel):
    """The evaluator's report (the same document `llm-allocator evaluate` prints)."""

    model_config = RESPONSE
    feasible: bool
    objective: float
    cost: dict[str, float]
    violations: list[dict[str, Any]]
    constraints: list[dict[str, Any]]
    deployments: list[dict[str, Any]]
    query_types: list[dict[str, Any]]
    total_gpus: int
    gpus_by_type: dict[str, int]
    stress: dict[str, Any] | None
    plan_version: int | None = Field(default=None, description="the live plan's, when used")
    calibrated: bool = Field(
        default=False,
        description="latencies judged under the calibration in force (GET /v1/calibration)",
    )
