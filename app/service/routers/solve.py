"""POST /v1/solve: a stateless what-if. Scenario in, plan out; nothing stored.

Solves run in their own process pool (`whatif_workers`, default 1), apart from
the reconciler's, so a what-if never delays a re-plan. When every worker is busy
the request is refused with 429 and Retry-After rather than queued behind
minutes of MILP.
"""

from __future__ import annotations

import time

from fastapi import APIRouter

from app.engine.errors import InputError, PlanFormatError
from app.service.auth import Authorized
from app.service.deps import LatencyDep, MetricsDep, RuntimeDep, SettingsDep, WhatIfPoolDep
from app.service.errors import Busy, InvalidInput, SolverFailed, Unavailable
from app.service.http import JsonBodyRoute
from app.service.limits import check_planning_size
from app.service.pool import SolverCrashed, SolverTimeout
from app.service.problems import problem_responses
from app.service.schemas import SolveRequest, SolveResponse
from app.service.worker import SolveJob, solve_job

router = APIRouter(prefix="/v1", tags=["solve"], route_class=JsonBodyRoute)


@router.post(
    "/solve",
    response_model=SolveResponse,
    summary="What-if: plan for a scenario (gh, agh or milp) without touching the cluster",
    dependencies=[Authorized],
    responses=problem_responses(401, 413, 422, 429, 503),
)
async def solve(
    body: SolveRequest,
    pool: WhatIfPoolDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    rt: RuntimeDep,
    latency: LatencyDep,
) -> SolveResponse:
    """`time_budget_s` is AGH's anytime budget, or the MILP's time limit; it may
    not exceed the `whatif_max_time_budget_s` setting. `current_plan` (optional)
    warm-starts AGH and prices the change cost against it. The latencies are the
    calibrated ones of the service (corrections are per engine, GPU, model and
    precision: they hold for any scenario on the same hardware)."""
    if body.time_budget_s > settings.whatif_max_time_budget_s:
        raise InvalidInput.field(
            "time_budget_s", f"must be <= {settings.whatif_max_time_budget_s} (service setting)"
        )
    spec = body.scenario.model_dump(mode="json")
    check_planning_size(spec, settings.max_plan_pairs, "scenario.query_types")
    if rt.whatif_busy >= pool.workers:
        raise Busy(
            f"all {pool.workers} what-if solver(s) are busy; retry shortly",
            body.time_budget_s,
            "solver-busy",
        )
    job = SolveJob(
        spec=spec,
        options=body.options(),
        current_plan=body.current_plan.model_dump(mode="json", exclude_none=True)
        if body.current_plan
        else None,
        explain=False,
        calibration=latency.current,
    )
    rt.whatif_busy += 1
    started = time.monotonic()
    try:
        out = await pool.run(body.time_budget_s + settings.solve_grace_s, solve_job, job)
    except (SolverTimeout, SolverCrashed) as exc:
        raise Unavailable(f"the solve did not complete: {exc}", 5, "solver-unavailable") from None
    except InputError as exc:
        # The engine names the field inside the document it was given.
        where = "current_plan" if isinstance(exc, PlanFormatError) else "scenario"
        raise exc.under(where) from None
    except Exception as exc:
        raise SolverFailed(f"the solver failed: {type(exc).__name__}: {exc}") from exc
    finally:
        rt.whatif_busy -= 1
        metrics.solve_seconds.labels("whatif").observe(time.monotonic() - started)
    return SolveResponse.model_validate({**out.solver, "plan": out.plan, "analysis": out.analysis})
