"""Schemas of the latency calibration: the answer to `POST /v1/observations/latency`
and the calibration document of `GET /v1/calibration` (built by the engine's
`Calibration.to_document()` and `LatencyLoop.report()`; these models describe it)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.service.schemas.common import RESPONSE


class LatencyAccepted(BaseModel):
    model_config = RESPONSE
    accepted: int = Field(description="observations stored by this request")
    observations: int = Field(description="stored observations the latest fit used")
    changed: bool = Field(
        description="the calibration in force changed (a new generation; a re-plan is under way)"
    )
    generation: int = Field(description="generation of the spec after this ingestion")


class Factors(BaseModel):
    """One level's multiplicative corrections and their uncertainty."""

    model_config = RESPONSE
    points: int = Field(description="observations behind it")
    ttft_factor: float = Field(description="predicted TTFT is multiplied by this")
    tpot_factor: float = Field(description="predicted TPOT is multiplied by this")
    ttft_log_se: float = Field(description="posterior standard deviation of log ttft_factor")
    tpot_log_se: float = Field(description="posterior standard deviation of log tpot_factor")


class GroupCalibration(Factors):
    """An (engine, GPU, model, precision) group and how well the correction fits
    its own points (mean absolute percentage error before and after)."""

    engine: str
    gpu: str
    model: str
    precision: str
    ttft_mape_before: float
    ttft_mape_after: float
    tpot_mape_before: float
    tpot_mape_after: float


class EngineGpuCalibration(Factors):
    engine: str
    gpu: str


class EngineCalibration(Factors):
    engine: str


class CalibrationPriorDoc(BaseModel):
    """How many points each level needs before it moves (prior strength)."""

    model_config = RESPONSE
    group_points: float
    gpu_points: float
    engine_points: float
    effective_points: float = Field(description="prior strength of an isolated group")
    huber_c: float = Field(description="outlier threshold, in scales")
    max_log_factor: float = Field(description="how far a lone point can move a correction")


class LogScale(BaseModel):
    model_config = RESPONSE
    ttft: float
    tpot: float


class CalibrationDoc(BaseModel):
    """A fitted calibration: every level's factors, finest first."""

    model_config = RESPONSE
    points: int
    skipped: int = Field(description="observations left out (non-positive or non-finite values)")
    prior: CalibrationPriorDoc
    scale: LogScale = Field(description="pooled log-ratio scale of one observation")
    groups: list[GroupCalibration]
    engine_gpus: list[EngineGpuCalibration]
    engines: list[EngineCalibration]


class CalibrationReport(BaseModel):
    """`in_force` is null until latency observations arrive."""

    model_config = RESPONSE
    observations: int = Field(description="stored observations the latest fit used")
    skipped: int = Field(
        description="stored observations the fit left out: ids that no longer resolve, or a "
        "deployment the performance model does not stand for (the checks of ingestion)"
    )
    deadband: float = Field(description="policy.replan_deadband: how far a correction must move")
    in_force: CalibrationDoc | None
    latest_fit_in_force: bool = Field(
        description="false: the latest fit stayed within the dead band of the one in force"
    )
