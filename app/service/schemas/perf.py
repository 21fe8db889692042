"""Schemas of POST /v1/perf/estimate."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    Tag,
)

from app.engine.model.schemas import GPUSpec, ModelSpec, PrecisionSpec

# strict: no bool-as-number or number-as-string coercion in what we define (the
# engine's scenario schemas keep pydantic's lax mode).
from app.service.schemas.common import (
    MAX_PERF_CASES,
    REQUEST,
    RESPONSE,
)


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
