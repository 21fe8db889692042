"""The app factory. `create_app(settings)` builds the FastAPI app and starts
nothing; its lifespan opens the store, loads the state, starts the solver pools,
the reconcile task and the audit manager, and stops them in reverse order."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from app.service.audits import AuditManager
from app.service.demand import DemandLoop
from app.service.http import HeadAsGetMiddleware, RouteTable, refuse_unknown_query
from app.service.idempotency import IdempotencyMiddleware, document_idempotency
from app.service.latency import LatencyLoop
from app.service.limits import BodyLimitMiddleware
from app.service.metrics import HttpMetricsMiddleware, Metrics
from app.service.pool import SolverPool
from app.service.problems import document_problems, install_problem_handlers
from app.service.reconcile import Reconciler
from app.service.routers import (
    audits,
    calibration,
    cluster,
    evaluate,
    forecast,
    health,
    observations,
    perf,
    plan,
    solve,
    sources,
)
from app.service.runtime import Running, Runtime
from app.service.settings import Settings
from app.service.sourcing import SourcesCollector, SourcesManager
from app.service.state import ControlPlane
from app.service.store import Store

log = logging.getLogger("llm_allocator.service")

DESCRIPTION = """\
Plans an LLM-serving fleet (model, GPU type, precision, TP/PP, replicas, routing)
under SLO, accuracy, budget and availability constraints, and re-plans whenever
demand or GPU availability changes.

* Writes (`PUT /v1/cluster`, `POST /v1/cluster/*`) bump the spec's `generation`
  and answer at once; a background reconciler re-plans the latest spec with AGH.
* After each re-plan a background improvement of the same generation may publish a
  cheaper plan version (`solver.source: "improvement"`) when it saves more than its
  change cost plus a threshold; a newer generation stops it.
* `GET /v1/plan` serves the live plan, its conditions and the diff against the
  previous plan; long-poll with `?wait_for_generation=N`.
* Errors are RFC 9457 problem documents naming the offending field.
* With a token configured, writes, solves and audits need `Authorization: Bearer`.
"""


def runtime_of(app: FastAPI) -> Runtime:
    rt: Runtime = app.state.runtime
    return rt


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    rt = runtime_of(app)
    settings, metrics = rt.settings, rt.metrics
    store = Store(settings.db_path)
    store.open()  # StoreError: refuse to start, with the reason
    reconcile_pool = SolverPool("reconcile", 1, settings.solver_start_method, share_generation=True)
    # Background improvements get a process of their own: a re-plan never waits
    # for one (and a newer generation stops it through its shared counter).
    improve_pool = (
        SolverPool("improve", 1, settings.solver_start_method, share_generation=True)
        if settings.improve_budget_s > 0
        else None
    )
    whatif_pool = SolverPool(
        "whatif", settings.whatif_workers, settings.solver_start_method, lazy=True
    )
    pools = [p for p in (reconcile_pool, improve_pool, whatif_pool) if p is not None]
    cp = ControlPlane(store, settings, metrics)
    demand = DemandLoop(cp, store, settings, metrics)
    latency = LatencyLoop(cp, store, settings, metrics)
    audit_manager = AuditManager(cp, settings, metrics, calibration=lambda: latency.current)
    source_manager = SourcesManager(cp, store, demand, latency)
    collector = SourcesCollector(source_manager)
    metrics.registry.register(collector)
    reconciler = Reconciler(
        cp,
        reconcile_pool,
        settings,
        metrics,
        demand_info=demand.planned_vs_observed,
        calibration=lambda: latency.current,
        improve_pool=improve_pool,
    )
    try:
        await cp.load()
        await demand.load()
        await latency.load()
        for pool in pools:
            pool.start()
        await audit_manager.start()
        cp.on_spec_change = reconciler.wake
        reconciler.start()
        await source_manager.load()
        rt.running = Running(
            store, cp, audit_manager, whatif_pool, reconciler, demand, latency, source_manager
        )
        rt.stopping = False
        log.info(
            "serving generation %d (plan %s) from %s",
            cp.cluster.generation,
            cp.plan.version if cp.plan else "pending",
            settings.db_path,
        )
        yield
    finally:
        rt.stopping = True
        cp.close()
        await source_manager.stop()
        metrics.registry.unregister(collector)
        await reconciler.stop()
        await audit_manager.close()
        for pool in pools:
            pool.close()
        rt.running = None
        store.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="llm-allocator",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.runtime = Runtime(settings, Metrics())
    install_problem_handlers(app)
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(document_idempotency(generate_openapi()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    routers = (
        cluster.router,
        plan.router,
        solve.router,
        audits.router,
        observations.router,
        forecast.router,
        calibration.router,
        sources.router,
        evaluate.router,
        perf.router,
        health.router,
    )
    # The app's own routes (/openapi.json, /docs) and the routers': what the
    # layers in front of the router match a request against.
    routes = RouteTable([*app.router.routes, *(r for router in routers for r in router.routes)])
    runtime_of(app).routes = routes
    for router in routers:
        app.include_router(router, dependencies=[Depends(refuse_unknown_query)])
    # Added innermost first: metrics sees everything (413s included), the body
    # limit runs before anything reads the body, idempotency wraps the routes.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(HttpMetricsMiddleware, metrics=runtime_of(app).metrics, routes=routes)
    return app
