"""POST /v1/perf/estimate: the performance model, case by case.

A case names its model, GPU and precision by id (the cluster spec's, then the
built-in catalog's) or inline (the engine's ModelSpec / GPUSpec / PrecisionSpec),
and optionally its serving engine. Unknown ids are input errors (422 naming
`cases[k].model`); a case the model deems impossible (precision unsupported on
the GPU, TP beyond a node, a prompt beyond the model's context, inputs that make
the prediction non-finite) gets a per-case `error` and the others still answer.
Predictions use the calibration in force (each says whether, and from how many
observed points).
"""

from __future__ import annotations

from fastapi import APIRouter

from app.engine import api
from app.service.deps import ControlPlaneDep, LatencyDep, SettingsDep
from app.service.errors import InvalidInput
from app.service.http import JsonBodyRoute
from app.service.latency import resolve
from app.service.problems import problem_responses
from app.service.schemas import PerfRequest, PerfResponse, Prediction

router = APIRouter(prefix="/v1/perf", tags=["perf"], route_class=JsonBodyRoute)


@router.post(
    "/estimate",
    response_model=PerfResponse,
    summary="Predict TTFT, TPOT and max concurrency for each case",
    responses=problem_responses(413, 422),
)
def estimate(
    body: PerfRequest, settings: SettingsDep, cp: ControlPlaneDep, latency: LatencyDep
) -> PerfResponse:
    """Predictions come back in the order of `cases`. Runs on a worker thread (a
    plain `def`): a batch of cases is numpy work, not something for the loop."""
    if len(body.cases) > settings.max_perf_cases:
        raise InvalidInput.field("cases", f"at most {settings.max_perf_cases} cases per request")
    scenario = api.parse_scenario(cp.cluster.spec)
    errors: list[tuple[str, str]] = []
    resolved = []
    for k, case in enumerate(body.cases):
        try:
            resolved.append(resolve(case, scenario, f"cases[{k}]"))
        except InvalidInput as exc:
            errors += exc.errors
    if errors:
        raise InvalidInput(errors)
    calibration = latency.current
    out = [
        api.estimate(
            api.PerfCase(
                r.model,
                r.gpu,
                r.precision,
                case.tp,
                case.pp,
                case.input_tokens,
                case.output_tokens,
                case.concurrency,
                r.engine,
            ),
            calibration,
        )
        for case, r in zip(body.cases, resolved, strict=True)
    ]
    return PerfResponse(predictions=[Prediction.model_validate(p.to_dict()) for p in out])
