"""GET /v1/forecast: the demand the plan carries, per query type, and how the
forecasts behind it have held up."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.service.deps import DemandDep
from app.service.http import NOT_MODIFIED, JsonBodyRoute, json_with_etag
from app.service.schemas.observations import ForecastReport

router = APIRouter(prefix="/v1", tags=["observations"], route_class=JsonBodyRoute)


@router.get(
    "/forecast",
    response_model=ForecastReport,
    summary="Planned demand per query type, the forecast behind it, its coverage so far",
    responses=NOT_MODIFIED,
)
async def get_forecast(request: Request, demand: DemandDep) -> Response:
    """Per type: the rate the plan carries (`planned_rps`: forecast from
    observations, or the declared rate when none were posted), the latest forecast
    (quantile, method, observation windows used, how it was made), the latest
    observed window, and the coverage so far: of the observed windows that ran
    while an applied forecast was in force, the share at or below it (compare with
    the target quantile)."""
    report = ForecastReport.model_validate(await demand.report())
    return json_with_etag(request, report.model_dump(mode="json"))
