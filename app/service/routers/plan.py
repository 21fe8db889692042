"""/v1/plan: the live plan with its status, conditions and diff; the plan
history; long-polling for the plan of a given generation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from app.service.audits import certified_gap
from app.service.deps import ControlPlaneDep, RuntimeDep, SettingsDep, WhatIfPoolDep
from app.service.http import NOT_MODIFIED, JsonBodyRoute, json_with_etag
from app.service.problems import ProblemError, problem_responses
from app.service.schemas import PlanHistoryPage, PlanStatus, PlanVersion
from app.service.schemas.plans import PlanExplanation
from app.service.state import ControlPlane
from app.service.store import PlanRow
from app.service.worker import explain_job

router = APIRouter(prefix="/v1/plan", tags=["plan"], route_class=JsonBodyRoute)

DEFAULT_WAIT_S = 30.0
MAX_VERSION = 2**62  # SQLite integers are 64-bit: larger ids cannot exist


async def _last_audit(cp: ControlPlane, row: PlanRow) -> dict[str, Any] | None:
    audit = await cp.store.call(cp.store.latest_finished_audit, row.version)
    if audit is None:
        return None
    return {"id": audit.id, "state": audit.state, "certified_gap": certified_gap(audit.result)}


def _stored_plan(row: PlanRow | None) -> dict[str, Any]:
    """A stored plan version's fields as the API names them (all None: no plan yet)."""
    return {
        "version": row.version if row else None,
        "observed_generation": row.observed_generation if row else None,
        "created_at": row.created_at if row else None,
        "plan": row.plan if row else None,
        "solver": row.solver if row else None,
        "analysis": row.analysis if row else None,
        "diff": row.diff if row else None,
    }


async def plan_status(cp: ControlPlane) -> dict[str, Any]:
    row = cp.plan
    return {
        **_stored_plan(row),
        "generation": cp.cluster.generation,
        "status": cp.summary_status(),
        "conditions": list(cp.conditions),
        "last_audit": await _last_audit(cp, row) if row else None,
    }


@router.get(
    "",
    response_model=PlanStatus,
    summary="The live plan, its status and the actions since the previous plan",
    responses={**NOT_MODIFIED, **problem_responses(422)},
)
async def get_plan(
    request: Request,
    cp: ControlPlaneDep,
    settings: SettingsDep,
    wait_for_generation: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_VERSION,
            description="long-poll: answer once the plan for this generation (or a later "
            "one) is live, or re-planning it failed, or timeout_s passed",
        ),
    ] = None,
    timeout_s: Annotated[
        float | None,
        Query(
            ge=0,
            le=3600,
            allow_inf_nan=False,
            description="long-poll limit in seconds (default 30; capped by the service's "
            "long_poll_max_s, 60 by default)",
        ),
    ] = None,
) -> Response:
    """Always 200. Before the first plan exists `status` is "Pending" and `plan` is
    null. `observed_generation` < `generation` means a re-plan is under way
    (`status` "Reconciling"). After a long-poll compare `observed_generation`
    with the generation you waited for: a time-out still answers 200."""
    if wait_for_generation is not None:
        wait = min(DEFAULT_WAIT_S if timeout_s is None else timeout_s, settings.long_poll_max_s)
        await cp.wait_handled(wait_for_generation, wait)
    return json_with_etag(request, await plan_status(cp))


def _summary(row: PlanRow) -> dict[str, Any]:
    return {
        "version": row.version,
        "observed_generation": row.observed_generation,
        "created_at": row.created_at,
        "cost_total": row.plan.get("cost", {}).get("total"),
        "feasible": bool(row.plan.get("feasible")),
        "gpus": sum(int(d.get("gpus", 0)) for d in row.plan.get("deployments", [])),
        "algorithm": row.solver.get("algorithm", ""),
        "termination": row.solver.get("termination", ""),
        "source": row.solver.get("source"),
        "actions": len(row.diff.get("actions", [])),
    }


@router.get("/history", response_model=PlanHistoryPage, summary="Past plans, newest first")
async def plan_history(
    request: Request,
    cp: ControlPlaneDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    before: Annotated[
        int | None,
        Query(ge=1, le=MAX_VERSION, description="only versions older than this (from `next`)"),
    ] = None,
) -> Response:
    """Keyset pagination: follow `next` until it is null. Old versions beyond the
    `plan_history_limit` setting are pruned."""
    rows = await cp.store.call(cp.store.list_plans, limit + 1, before)
    items = [_summary(r) for r in rows[:limit]]
    nxt = (
        f"/v1/plan/history?limit={limit}&before={rows[limit - 1].version}"
        if len(rows) > limit
        else None
    )
    return json_with_etag(request, {"items": items, "next": nxt})


_EXPLAINED_MAX = 16  # explanations of plans stored without one, kept per app


@router.get(
    "/explain",
    response_model=PlanExplanation,
    summary="Why the live plan is what it is",
    responses={**NOT_MODIFIED, **problem_responses(404)},
)
async def explain_plan(
    request: Request,
    cp: ControlPlaneDep,
    rt: RuntimeDep,
    pool: WhatIfPoolDep,
    settings: SettingsDep,
) -> Response:
    """For each query type: where its traffic went, its cheapest feasible
    candidates ($ per request at the policy's headroom) and whether they are used,
    how many candidates meet its SLOs and accuracy bound, the constraints that bind
    (availability of a GPU type, budget, storage, accuracy) and why demand is unmet
    when it is. Computed with the plan, in the solver process (a plan stored by an
    older version without one is explained once, in a solver process too)."""
    row = cp.plan
    if row is None:
        raise ProblemError(404, "not-found", "no plan has been computed yet")
    explanation = row.explanation or rt.explained.get(row.version)
    if explanation is None:
        explanation = await pool.run(settings.solve_grace_s, explain_job, row.spec, row.plan)
        if len(rt.explained) >= _EXPLAINED_MAX:
            rt.explained.pop(next(iter(rt.explained)))
        rt.explained[row.version] = explanation
    body = {"version": row.version, "observed_generation": row.observed_generation, **explanation}
    return json_with_etag(request, body)


@router.get(
    "/{version}",
    response_model=PlanVersion,
    summary="One plan version (immutable)",
    responses={**NOT_MODIFIED, **problem_responses(404)},
)
async def get_plan_version(
    request: Request,
    cp: ControlPlaneDep,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    include_spec: Annotated[
        bool, Query(description="include the scenario it was made for")
    ] = False,
) -> Response:
    row = await cp.store.call(cp.store.get_plan, version)
    if row is None:
        raise ProblemError(
            404, "not-found", f"plan version {version} does not exist (or was pruned)"
        )
    body = _stored_plan(row)
    if include_spec:
        body["spec"] = row.spec
    return json_with_etag(request, body)
