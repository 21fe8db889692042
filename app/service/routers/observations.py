"""/v1/observations: what the fleet measured. Demand windows feed the service's
forecaster (`app.service.demand`), which updates the planned demand (and so
re-plans) when the forecast moves beyond the policy's dead band."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.service.auth import Authorized
from app.service.demand import from_epoch
from app.service.deps import DemandDep, LatencyDep
from app.service.http import JsonBodyRoute
from app.service.problems import problem_responses
from app.service.schemas.calibration import LatencyAccepted
from app.service.schemas.observations import DemandObservations, ObservationsAccepted
from app.service.schemas.perf import LatencyObservations

router = APIRouter(prefix="/v1/observations", tags=["observations"], route_class=JsonBodyRoute)


@router.post(
    "/demand",
    status_code=202,
    response_model=ObservationsAccepted,
    summary="Post demand observed over windows (request counts per query type)",
    dependencies=[Authorized],
    responses=problem_responses(401, 413, 422),
)
async def post_demand(body: DemandObservations, demand: DemandDep) -> JSONResponse:
    """Counts over windows (`start`, `window_s`), the form a gateway log or
    Prometheus `increase()` gives. Out of order and again are fine: the same type
    and start replaces the earlier window; a window overlapping another of its type
    with a different start is a 422 naming the item (it would count requests
    twice). Every `query_type` must exist in the spec (422 naming the item;
    nothing is stored then). Time is the windows' own:
    a replay may run faster than real time; but a window ending more than
    `observation_max_future_s` after the service's clock, or after year 9999, is a
    422 naming its `start`. A window older than the service keeps (the last
    `observation_retention_s`, at most 5 days, before the data time) would have
    no effect: it is not stored, and counted in `ignored` with `ignored_reason`.
    202: the forecast ran; if the planned demand moved beyond
    `policy.replan_deadband` (or an interval passed) the spec was updated and a
    re-plan is under way (`changed`, `generation`)."""
    rows = [o.domain() for o in body.observations]
    done = await demand.ingest(rows)
    plan_url = f"/v1/plan?wait_for_generation={done.generation}&timeout_s=30"
    out = ObservationsAccepted(
        accepted=done.accepted,
        replaced=done.replaced,
        ignored=done.ignored,
        ignored_reason=done.ignored_reason,
        changed=done.changed,
        generation=done.generation,
        data_time=None if done.data_time_s is None else from_epoch(done.data_time_s),
        plan_url=plan_url,
        forecast_url="/v1/forecast",
    )
    return JSONResponse(out.model_dump(), status_code=202, headers={"Location": plan_url})


@router.post(
    "/latency",
    status_code=202,
    response_model=LatencyAccepted,
    summary="Post latencies observed per deployment (calibrates the performance model)",
    dependencies=[Authorized],
    responses=problem_responses(401, 413, 422),
)
async def post_latency(body: LatencyObservations, latency: LatencyDep) -> JSONResponse:
    """Each item: a deployment (model, GPU, precision by id as in the spec or
    inline; TP, PP; engine, default the GPU's), a request shape, the concurrency it
    ran at and the TTFT/TPOT it showed (at least 1 µs each). Bad items are a 422
    naming the item, and nothing is stored: unknown ids, and a deployment the
    performance model does not stand for (the engine's checks, as in
    `/v1/perf/estimate`: precision unsupported on the GPU, TP beyond a node, a
    prompt beyond the context, weights that do not fit, TP or PP outside the
    policy's options). The calibration is refitted; when a correction moves beyond
    `policy.replan_deadband`, it is put in force and a re-plan starts (`changed`)."""
    out = await latency.ingest(body.observations)
    return JSONResponse(out.model_dump(), status_code=202)
