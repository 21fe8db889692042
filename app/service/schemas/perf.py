"""Schemas of POST /v1/perf/estimate."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Discriminator, Field, Tag

from app.engine.model.schemas import GPUSpec, ModelSpec, PrecisionSpec
from app.service.schemas.common import MAX_PERF_CASES, REQUEST, RESPONSE, Rfc3339

# No GPU produces a token (or a first token) in under a microsecond; a smaller
# latency is a unit error (ns as s, a rate as a time), and its log ratio to the
# model's prediction would dominate any calibration (1e-300 s gave an error of
# 1e299 before the fit).
MIN_LATENCY_S = 1e-6


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


class Deployed(BaseModel):
    """A deployment: model, GPU and precision by id (the cluster spec's first, then
    the built-in catalog's) or inline, and its TP/PP and serving engine."""

    model_config = REQUEST
    model: ModelRef = Field(description="an id or an inline ModelSpec", examples=["Llama-3.1-8B"])
    gpu: GPURef = Field(description="an id or an inline GPUSpec", examples=["H100-SXM"])
    precision: PrecisionRef = Field(
        description="bf16, fp8, int8, int4 (or the spec's) or an inline PrecisionSpec",
        examples=["bf16"],
    )
    tp: int = Field(default=1, ge=1, le=64)
    pp: int = Field(default=1, ge=1, le=64)
    engine: str | None = Field(
        default=None,
        description="serving engine (vllm, trtllm, sglang); default: the GPU's engine in "
        "the spec, else vllm",
        examples=["vllm"],
    )


class PerfCase(Deployed):
    input_tokens: float = Field(gt=0.0, le=10_000_000.0, examples=[1024])
    output_tokens: float = Field(gt=0.0, le=10_000_000.0, examples=[256])
    concurrency: int = Field(default=1, ge=1, le=1_000_000, examples=[8])


class LatencyObservationIn(Deployed):
    """Latency a deployment showed for a request shape at a concurrency (means over
    `window_s` from `start`, when given)."""

    input_tokens: float = Field(gt=0.0, le=10_000_000.0, examples=[1024])
    output_tokens: float = Field(gt=0.0, le=10_000_000.0, examples=[256])
    concurrency: float = Field(
        gt=0.0, le=1_000_000.0, description="requests in flight (a mean may be fractional)"
    )
    ttft_s: float = Field(ge=MIN_LATENCY_S, le=86_400.0, examples=[0.21])
    tpot_s: float = Field(ge=MIN_LATENCY_S, le=3_600.0, examples=[0.012])
    start: Rfc3339 | None = Field(default=None, description="RFC 3339", strict=False)
    window_s: float | None = Field(default=None, gt=0.0, le=86_400.0)


class LatencyObservations(BaseModel):
    model_config = REQUEST
    observations: list[LatencyObservationIn] = Field(min_length=1, max_length=10_000)


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
    engine: str | None = None
    profile: str | None = Field(default=None, description="the engine profile used")
    profile_note: str | None = Field(
        default=None, description="e.g. an engine without fitted constants"
    )
    calibrated: bool = Field(default=False, description="corrected by observed latencies")
    calibration_points: int = Field(default=0, description="observations behind the correction")
    error: str | None = None


class PerfResponse(BaseModel):
    model_config = RESPONSE
    predictions: list[Prediction]
