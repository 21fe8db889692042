"""Dependency aliases: the objects the lifespan owns, as `Annotated` types that
route functions declare (all read from the one typed `Runtime`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.service.audits import AuditManager
from app.service.demand import DemandLoop
from app.service.latency import LatencyLoop
from app.service.metrics import Metrics
from app.service.pool import SolverPool
from app.service.problems import ProblemError
from app.service.runtime import Running, Runtime
from app.service.settings import Settings
from app.service.sourcing import SourcesManager
from app.service.state import ControlPlane


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _running(request: Request) -> Running:
    running = get_runtime(request).running
    if running is None:
        raise ProblemError(503, "not-started", "the service is starting or stopping")
    return running


def get_settings(request: Request) -> Settings:
    return get_runtime(request).settings


def get_metrics(request: Request) -> Metrics:
    return get_runtime(request).metrics


def get_control_plane(request: Request) -> ControlPlane:
    return _running(request).control_plane


def get_audits(request: Request) -> AuditManager:
    return _running(request).audits


def get_whatif_pool(request: Request) -> SolverPool:
    return _running(request).whatif_pool


def get_demand(request: Request) -> DemandLoop:
    return _running(request).demand


def get_latency(request: Request) -> LatencyLoop:
    return _running(request).latency


def get_sources(request: Request) -> SourcesManager:
    return _running(request).sources


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ControlPlaneDep = Annotated[ControlPlane, Depends(get_control_plane)]
AuditsDep = Annotated[AuditManager, Depends(get_audits)]
WhatIfPoolDep = Annotated[SolverPool, Depends(get_whatif_pool)]
DemandDep = Annotated[DemandLoop, Depends(get_demand)]
LatencyDep = Annotated[LatencyLoop, Depends(get_latency)]
SourcesDep = Annotated[SourcesManager, Depends(get_sources)]
