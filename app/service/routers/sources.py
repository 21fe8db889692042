"""/v1/sources: where the service pulls observations from (Prometheus), and how
each configured query fares."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from app.service.auth import Authorized
from app.service.deps import SourcesDep
from app.service.http import JsonBodyRoute
from app.service.problems import problem_responses
from app.service.sources.config import SourcesSpec
from app.service.sources.prometheus import redacted_url

router = APIRouter(prefix="/v1/sources", tags=["sources"], route_class=JsonBodyRoute)


def _body(spec: SourcesSpec | None, status: Any) -> dict[str, Any]:
    """The configuration as stored but for the password in `prometheus_url`
    (GET needs no token); the status messages show the URL redacted already."""
    config = spec.model_dump(mode="json") if spec is not None else None
    if config is not None:
        config["prometheus_url"] = redacted_url(config["prometheus_url"])
    return {"config": config, "status": asdict(status) if status is not None else None}


@router.get("", summary="The source configuration and each query's status")
async def get_sources(sources: SourcesDep) -> dict[str, Any]:
    """`status.healthy` (also the plan's `SourcesHealthy` condition), and per query:
    its cursor (end of the last window ingested), lag, last success, last error in
    plain words, consecutive failures, windows ingested and skipped."""
    return _body(sources.spec, sources.status())


@router.put(
    "",
    summary="Configure the Prometheus source (PromQL per query type and deployment)",
    dependencies=[Authorized],
    responses=problem_responses(401, 413, 422),
)
async def put_sources(body: SourcesSpec, sources: SourcesDep) -> dict[str, Any]:
    """Replaces the configuration and restarts polling (cursors of queries that stay
    configured are kept: nothing is fetched twice). Every `query_type` must exist in
    the spec and every deployment resolve (422 naming it); bad PromQL or an
    unreachable URL is accepted and reported in the status."""
    await sources.put(body)
    return _body(sources.spec, sources.status())
