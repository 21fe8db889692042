"""POST /v1/solve: a stateless what-if. Scenario in, plan out; nothing stored.

Solves run in their own process pool (`whatif_workers`, default 1), apart from
the reconciler's, so a what-if never delays a re-plan. When every worker is busy
the request is refused with 429 and Retry-After rather than queued behind
minutes of MILP.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.service.auth import Authorized
from app.service.deps import MetricsDep, SettingsDep, WhatIfPoolDep
from app.service.pool import SolverCrashed, SolverTimeout
from app.service.problems import ProblemError, field_problem, problem_responses
from app.service.schemas import SolveRequest, SolveResponse
from app.service.worker import solve_job

router = APIRouter(prefix="/v1", tags=["solve"])


@router.post(
    "/solve",
    response_model=SolveResponse,
    summary="What-if: plan for a scenario (gh, agh or milp) without touching the cluster",
    dependencies=[Authorized],
    responses=problem_responses(401, 413, 422, 429, 503),
)
async def solve(
    request: Request,
    body: SolveRequest,
    pool: WhatIfPoolDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> Response:
    """`time_budget_s` is AGH's anytime budget, or the MILP's time limit; it may
    not exceed the `whatif_max_time_budget_s` setting. `current_plan` (optional)
    warm-starts AGH and prices the change cost against it."""
    if body.time_budget_s > settings.whatif_max_time_budget_s:
        raise field_problem(
            "time_budget_s", f"must be <= {settings.whatif_max_time_budget_s} (service setting)"
        )
    busy: dict[str, int] = request.app.state.whatif_busy
    if busy["n"] >= pool.workers:
        raise ProblemError(
            429,
            "solver-busy",
            f"all {pool.workers} what-if solver(s) are busy; retry shortly",
            headers={"Retry-After": str(max(1, round(body.time_budget_s)))},
        )
    busy["n"] += 1
    started = time.monotonic()
    try:
        out = await pool.run(
            body.time_budget_s + settings.solve_grace_s,
            solve_job,
            body.scenario.model_dump(mode="json"),
            body.algorithm,
            body.time_budget_s,
            body.seed,
            body.current_plan.model_dump(mode="json", exclude_none=True)
            if body.current_plan
            else None,
        )
    except (SolverTimeout, SolverCrashed) as exc:
        raise ProblemError(
            503,
            "solver-unavailable",
            f"the solve did not complete: {exc}",
            headers={"Retry-After": "5"},
        ) from None
    finally:
        busy["n"] -= 1
        metrics.solve_seconds.labels("whatif").observe(time.monotonic() - started)
    if not out["ok"]:
        if out["kind"] == "input":
            f = out["field"]
            prefix = "current_plan" if f.split("[")[0].split(".")[0] in _PLAN_FIELDS else "scenario"
            raise field_problem(f"{prefix}.{f}", out["message"])
        raise ProblemError(500, "solver-error", f"the solver failed: {out['message']}")
    return JSONResponse({**out["result"], "analysis": out["analysis"]})


_PLAN_FIELDS = {"plan", "deployments", "routing", "unmet"}
