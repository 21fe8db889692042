"""POST /v1/perf/estimate: the performance model, case by case.

A case names its model, GPU and precision by catalog id or inline (the engine's
ModelSpec / GPUSpec / PrecisionSpec). Unknown ids are input errors (422 naming
`cases[k].model`); a case the model deems impossible (precision unsupported on
the GPU, TP beyond a node) gets a per-case `error` and the others still answer.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter

from app.engine.model.catalog import catalog_gpu, catalog_model, catalog_precision
from app.engine.model.domain import GPU, Model, Precision
from app.engine.perf.model import predict
from app.service.deps import SettingsDep
from app.service.problems import ProblemError, problem_responses
from app.service.schemas import PerfCase, PerfRequest, PerfResponse

router = APIRouter(prefix="/v1/perf", tags=["perf"])

_OUTPUTS = ("ttft_s", "tpot_s", "e2e_s", "throughput_rps", "max_concurrency", "fits")


def _resolve(case: PerfCase, k: int, errors: list[tuple[str, str]]) -> tuple[Any, Any, Any]:
    model: Model | None
    gpu: GPU | None
    precision: Precision | None
    if isinstance(case.model, str):
        model = catalog_model(case.model)
        if model is None:
            errors.append((f"cases[{k}].model", f"unknown catalog model {case.model!r}"))
    else:
        model = Model(**case.model.model_dump())
    if isinstance(case.gpu, str):
        gpu = catalog_gpu(case.gpu)
        if gpu is None:
            errors.append((f"cases[{k}].gpu", f"unknown catalog GPU {case.gpu!r}"))
    else:
        gpu = GPU(**case.gpu.model_dump())
    if isinstance(case.precision, str):
        precision = catalog_precision(case.precision)
        if precision is None:
            errors.append(
                (
                    f"cases[{k}].precision",
                    f"unknown precision {case.precision!r} (bf16, fp8, int8, int4)",
                )
            )
    else:
        precision = Precision(**case.precision.model_dump())
    return model, gpu, precision


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@router.post(
    "/estimate",
    response_model=PerfResponse,
    summary="Predict TTFT, TPOT and max concurrency for each case",
    responses=problem_responses(413, 422),
)
def estimate(body: PerfRequest, settings: SettingsDep) -> dict[str, Any]:
    """Predictions come back in the order of `cases`. Runs on a worker thread (a
    plain `def`): a batch of cases is numpy work, not something for the loop."""
    if len(body.cases) > settings.max_perf_cases:
        raise ProblemError(
            422,
            "validation",
            f"cases: at most {settings.max_perf_cases} cases per request",
            title="Invalid input",
            errors=[("cases", f"at most {settings.max_perf_cases} cases per request")],
        )
    errors: list[tuple[str, str]] = []
    resolved = [_resolve(c, k, errors) for k, c in enumerate(body.cases)]
    if errors:
        raise ProblemError(
            422,
            "validation",
            "; ".join(f"{f}: {m}" for f, m in errors[:5]),
            title="Invalid input",
            errors=errors,
        )
    out: list[dict[str, Any]] = []
    for case, (model, gpu, precision) in zip(body.cases, resolved, strict=True):
        try:
            p = predict(
                model,
                gpu,
                precision,
                case.tp,
                case.pp,
                case.input_tokens,
                case.output_tokens,
                case.concurrency,
            )
        except (ValueError, ArithmeticError) as exc:
            out.append({"error": str(exc)})
            continue
        out.append({k: _clean(p.get(k)) for k in _OUTPUTS})
    return {"predictions": out}
