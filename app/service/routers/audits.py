"""/v1/audits: exact MILP audits as jobs (see app.service.audits for limits)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from app.service.audits import AuditManager, certified_gap
from app.service.auth import Authorized
from app.service.deps import AuditsDep
from app.service.http import JsonBodyRoute
from app.service.problems import ProblemError, field_problem, problem_responses
from app.service.schemas import Audit, AuditCreate, AuditPage
from app.service.store import AuditRow

router = APIRouter(
    prefix="/v1/audits", tags=["audits"], dependencies=[Authorized], route_class=JsonBodyRoute
)

AuditId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


def audit_body(audits: AuditManager, row: AuditRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "request": row.request,
        "plan_version": row.plan_version,
        "observed_generation": row.observed_generation,
        "cancel_requested": audits.is_cancel_requested(row.id) or row.state == "cancelled",
        "certified_gap": certified_gap(row.result),
        "result": row.result,
        "error": row.error,
    }


def _not_found(audit_id: str) -> ProblemError:
    return ProblemError(404, "not-found", f"no audit {audit_id} (it may have been pruned)")


@router.post(
    "",
    status_code=202,
    response_model=Audit,
    summary="Start an exact MILP audit of the live plan (or a plan version)",
    responses=problem_responses(401, 413, 422, 429),
)
async def create_audit(body: AuditCreate, audits: AuditsDep) -> Response:
    """202 with the audit record and `Location: /v1/audits/{id}`; poll it. When
    the running and queued slots are all taken, 429 with Retry-After."""
    row = await audits.create(body)
    return JSONResponse(
        audit_body(audits, row), status_code=202, headers={"Location": f"/v1/audits/{row.id}"}
    )


@router.get("", response_model=AuditPage, summary="Audits, newest first")
async def list_audits(
    audits: AuditsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    after: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[0-9a-f]+$", description="continue after this audit id"),
    ] = None,
    plan_version: Annotated[
        int | None,
        Query(ge=1, description="only the audits of this plan version"),
    ] = None,
) -> Response:
    store = audits.store
    before = None
    if after is not None:
        before = await store.call(store.audit_seq, after)
        if before is None:
            raise field_problem("after", f"no audit {after} (it may have been pruned)")
    rows = await store.call(store.list_audits, limit + 1, before, plan_version)
    items = [audit_body(audits, r) for _, r in rows[:limit]]
    also = f"&plan_version={plan_version}" if plan_version is not None else ""
    nxt = (
        f"/v1/audits?limit={limit}&after={rows[limit - 1][1].id}{also}"
        if len(rows) > limit
        else None
    )
    return JSONResponse({"items": items, "next": nxt})


@router.get(
    "/{audit_id}",
    response_model=Audit,
    summary="An audit: state, MILP result, the plan's certified gap",
    responses=problem_responses(401, 404),
)
async def get_audit(audit_id: AuditId, audits: AuditsDep, request: Request) -> Response:
    row = await audits.store.call(audits.store.get_audit, audit_id)
    if row is None:
        raise _not_found(audit_id)
    return JSONResponse(audit_body(audits, row))


@router.delete(
    "/{audit_id}",
    response_model=Audit,
    summary="Cancel an audit (kills CBC)",
    responses={
        202: {"model": Audit, "description": "cancel requested"},
        **problem_responses(401, 404),
    },
)
async def cancel_audit(audit_id: AuditId, audits: AuditsDep) -> Response:
    """A queued audit is cancelled at once (200). A running one is asked to stop
    (202): CBC is killed within about a second and the audit ends `cancelled`,
    keeping whatever bound it had. An audit that already finished is left as it
    is (200, idempotent)."""
    row, requested = await audits.cancel(audit_id)
    if row is None:
        raise _not_found(audit_id)
    status = 202 if requested and row.state == "running" else 200
    return JSONResponse(audit_body(audits, row), status_code=status)
