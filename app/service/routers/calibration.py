"""GET /v1/calibration: the corrections observed latencies apply to the
performance model, per (engine, GPU, model, precision) and coarser levels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from app.service.deps import LatencyDep
from app.service.http import NOT_MODIFIED, JsonBodyRoute, json_with_etag
from app.service.schemas.calibration import CalibrationReport

router = APIRouter(prefix="/v1", tags=["observations"], route_class=JsonBodyRoute)


@router.get(
    "/calibration",
    response_model=CalibrationReport,
    summary="The calibration in force: factors, points and residual error per group",
    responses=NOT_MODIFIED,
)
async def get_calibration(request: Request, latency: LatencyDep) -> Response:
    """Per group (engine, GPU, model, precision) and per coarser level (engine ×
    GPU, engine): the TTFT and TPOT factors, the points behind them, their
    uncertainty, and each group's error (MAPE) on its own points before and after.
    `in_force` is null until latency observations arrive. A new fit replaces the one
    in force only when a correction moves beyond `policy.replan_deadband`."""
    body: dict[str, Any] = latency.report()
    return json_with_etag(request, body)
