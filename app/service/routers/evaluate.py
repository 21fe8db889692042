"""POST /v1/evaluate: does a fleet hold under a demand? The one evaluator on a
scenario (default: the live spec) with an optional demand override, and a plan
(default: the live plan). Nothing is stored, nothing is re-planned."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from app.engine.api import evaluate_documents
from app.engine.errors import InputError, PlanFormatError
from app.service.deps import ControlPlaneDep, LatencyDep
from app.service.errors import InvalidInput, NotFound
from app.service.http import JsonBodyRoute
from app.service.problems import problem_responses
from app.service.schemas.observations import EvaluateRequest, EvaluateResponse

router = APIRouter(prefix="/v1", tags=["evaluate"], route_class=JsonBodyRoute)


@router.post(
    "/evaluate",
    response_model=EvaluateResponse,
    summary="Evaluate a plan (default: the live plan) against a scenario and demand",
    responses=problem_responses(404, 413, 422),
)
async def evaluate(
    body: EvaluateRequest, cp: ControlPlaneDep, latency: LatencyDep
) -> EvaluateResponse:
    """The evaluator's report: cost, every constraint's slack, violations, how each
    query type is served, and with factors != 1 the stress figures. `demand`
    overrides arrival rates (req/s) by query type id, e.g. "does the fleet I run
    hold at tomorrow's peak?" Latencies are judged under the calibration in force
    (as every re-plan is), so the live plan evaluates as it was published; the
    CLI's `evaluate` has no observations and uses the uncalibrated model.
    (Pure computation: open like the other reads.)"""
    live = cp.plan
    scenario: dict[str, Any] = (
        body.scenario.model_dump(mode="json") if body.scenario else cp.cluster.spec
    )
    if body.plan is not None:
        plan = body.plan.model_dump(mode="json", exclude_none=True)
        version = None
    elif live is not None:
        plan, version = live.plan, live.version
    else:
        raise NotFound("no plan has been computed yet; give `plan`")
    if body.demand:
        known = {q["id"] for q in scenario["query_types"]}
        unknown = [
            (f"demand.{q}", f"unknown query type {q!r}") for q in body.demand if q not in known
        ]
        if unknown:
            raise InvalidInput(unknown)
        bad = [
            (f"demand.{q}", "must be a finite rate >= 0")
            for q, r in body.demand.items()
            if not r >= 0
        ]
        if bad:
            raise InvalidInput(bad)
        scenario = {
            **scenario,
            "query_types": [
                {**q, "arrival_rate": body.demand.get(q["id"], q["arrival_rate"])}
                for q in scenario["query_types"]
            ],
        }
    try:
        report = await asyncio.to_thread(
            evaluate_documents,
            scenario,
            plan,
            None,
            body.delay_factor,
            body.error_factor,
            body.demand_factor,
            latency.current,
        )
    except InputError as exc:
        where = "plan" if isinstance(exc, PlanFormatError) else "scenario"
        raise exc.under(where) from None
    calibrated = latency.current is not None and bool(latency.current.fits)
    return EvaluateResponse.model_validate(
        {**report, "plan_version": version, "calibrated": calibrated}
    )
