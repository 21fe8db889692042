"""Dependency aliases: the objects the lifespan owns, as `Annotated` types that
route functions declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.service.audits import AuditManager
from app.service.metrics import Metrics
from app.service.pool import SolverPool
from app.service.problems import ProblemError
from app.service.settings import Settings
from app.service.state import ControlPlane


def _running(request: Request, name: str) -> object:
    obj = getattr(request.app.state, name, None)
    if obj is None:
        raise ProblemError(503, "not-started", "the service is starting or stopping")
    return obj


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_control_plane(request: Request) -> ControlPlane:
    return _running(request, "control_plane")  # type: ignore[return-value]


def get_audits(request: Request) -> AuditManager:
    return _running(request, "audits")  # type: ignore[return-value]


def get_whatif_pool(request: Request) -> SolverPool:
    return _running(request, "whatif_pool")  # type: ignore[return-value]


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ControlPlaneDep = Annotated[ControlPlane, Depends(get_control_plane)]
AuditsDep = Annotated[AuditManager, Depends(get_audits)]
WhatIfPoolDep = Annotated[SolverPool, Depends(get_whatif_pool)]
