"""Liveness, readiness and Prometheus metrics (at the root, not under /v1)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.service.deps import MetricsDep, RuntimeDep
from app.service.http import JsonBodyRoute
from app.service.schemas import Health

router = APIRouter(tags=["health"], route_class=JsonBodyRoute)


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: started, database open, a plan exists",
    responses={503: {"model": Health, "description": "not ready"}},
)
async def readyz(rt: RuntimeDep) -> Response:
    """503 until the first plan is live (the first solve takes about
    `time_budget_s` after start) and while shutting down."""
    running = rt.running
    checks = {
        "started": "ok" if running is not None and not rt.stopping else "no",
        "database": "ok" if running is not None else "no",
        "plan": "ok" if running is not None and running.control_plane.plan is not None else "no",
    }
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
