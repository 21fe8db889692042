"""/v1/cluster: the cluster spec (scenario document) and the changes an
orchestrator posts (demand snapshots, GPU availability)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.types import DecoratedCallable

from app.service.auth import Authorized
from app.service.changes import apply_availability, apply_demand
from app.service.deps import ControlPlaneDep, DemandDep
from app.service.http import NOT_MODIFIED, JsonBodyRoute, json_with_etag
from app.service.problems import problem_responses
from app.service.schemas import (
    Accepted,
    AvailabilityUpdate,
    ClusterReplace,
    ClusterResource,
    DemandUpdate,
)
from app.service.state import ClusterSnapshot

router = APIRouter(prefix="/v1/cluster", tags=["cluster"], route_class=JsonBodyRoute)

IfMatch = Annotated[
    str | None,
    Header(
        description="optional: the ETag of GET /v1/cluster; 412 if the spec changed since",
    ),
]


def _resource(snap: ClusterSnapshot) -> dict[str, Any]:
    return {"spec": snap.spec, "generation": snap.generation, "updated_at": snap.updated_at}


def _accepted(snap: ClusterSnapshot, changed: bool) -> JSONResponse:
    plan_url = f"/v1/plan?wait_for_generation={snap.generation}&timeout_s=30"
    body = {"generation": snap.generation, "changed": changed, "plan_url": plan_url}
    return JSONResponse(body, status_code=202, headers={"ETag": snap.etag, "Location": plan_url})


def _change(path: str, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A POST that changes the spec: behind the token, 202 with the new generation."""
    return router.post(
        path,
        status_code=202,
        response_model=Accepted,
        summary=summary,
        dependencies=[Authorized],
        responses=problem_responses(401, 412, 413, 422),
    )


@router.get(
    "",
    response_model=ClusterResource,
    summary="The cluster spec and its generation",
    responses=NOT_MODIFIED,
)
async def get_cluster(request: Request, cp: ControlPlaneDep) -> Response:
    snap = cp.cluster
    return json_with_etag(request, _resource(snap), etag=snap.etag)


@router.put(
    "",
    response_model=ClusterResource,
    summary="Replace the cluster spec",
    dependencies=[Authorized],
    responses=problem_responses(401, 412, 413, 422),
)
async def put_cluster(
    request: Request,
    body: ClusterReplace,
    cp: ControlPlaneDep,
    demand: DemandDep,
    if_match: IfMatch = None,
) -> Response:
    """Replace the whole spec. The new spec is validated as a whole before
    anything is stored; the generation goes up by one if it differs from the
    current spec. Re-planning starts in the background. A change of how demand is
    forecast (method, quantile, interval, delay, dead band, stabilization) is
    applied to the types with observations at once: their planned rates are
    written in one more generation, and the answer is the spec after it."""
    before = cp.cluster.spec["policy"]
    new_spec = body.spec.model_dump(mode="json")
    # engine errors name fields of the spec; in the request it sits under "spec"
    snap, _ = await cp.update_spec(lambda _cur: new_spec, if_match, field_map=lambda f: f"spec.{f}")
    if await demand.policy_changed(before, snap.spec["policy"]):
        snap = cp.cluster
    return JSONResponse(_resource(snap), headers={"ETag": snap.etag})


@_change("/demand", summary="Post a demand snapshot")
async def post_demand(
    body: DemandUpdate, cp: ControlPlaneDep, if_match: IfMatch = None
) -> Response:
    """`replace`: the query types become exactly the ones given. `merge`: update the
    named query types field by field (add new ones, which must then be complete)
    and drop those in `remove`. 202 with the new generation; wait for its plan with
    `GET /v1/plan?wait_for_generation=N` (the `Location` header)."""
    # Engine errors name fields of the merged spec; map them back to the request.
    to_request: list[Callable[[str], str]] = []

    def mutate(cur: dict[str, Any]) -> dict[str, Any]:
        new, mapping = apply_demand(cur, body)
        to_request.append(mapping)
        return new

    def field_map(f: str) -> str:
        return to_request[-1](f) if to_request else f

    snap, changed = await cp.update_spec(mutate, if_match, field_map=field_map)
    return _accepted(snap, changed)


@_change("/availability", summary="Update GPU availability and prices")
async def post_availability(
    body: AvailabilityUpdate, cp: ControlPlaneDep, if_match: IfMatch = None
) -> Response:
    """Set how many GPUs of each named type may be rented now (and optionally
    their price per GPU-hour). Every GPU id must exist in the spec (422 naming
    `available.<id>` otherwise)."""
    snap, changed = await cp.update_spec(lambda cur: apply_availability(cur, body), if_match)
    return _accepted(snap, changed)
