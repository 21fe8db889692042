"""Prometheus metrics, in a registry owned by one app instance (tests build many
apps in one process; the global default registry would collide)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

AUDIT_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.replans = Counter(
            "llm_allocator_replans", "Re-plans attempted, by outcome", ["outcome"], registry=r
        )
        self.improvements = Counter(
            "llm_allocator_improvements",
            "Background improvement solves, by outcome (published, not_better, stopped, "
            "superseded, failed)",
            ["outcome"],
            registry=r,
        )
        self.improvement_savings = Counter(
            "llm_allocator_improvement_savings_dollars",
            "$ per policy horizon saved by published improvements (change cost included)",
            registry=r,
        )
        self.solve_seconds = Histogram(
            "llm_allocator_solve_seconds",
            "Wall time of solves, by kind (reconcile, improvement, whatif)",
            ["kind"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.plan_cost = Gauge(
            "llm_allocator_plan_cost_dollars",
            "Objective of the live plan, $ per policy horizon",
            registry=r,
        )
        self.plan_unmet = Gauge(
            "llm_allocator_plan_unmet_fraction",
            "Demand-weighted fraction of requests the live plan leaves unserved",
            registry=r,
        )
        self.plan_feasible = Gauge(
            "llm_allocator_plan_feasible", "1 if the live plan passes the evaluator", registry=r
        )
        self.plan_gpus = Gauge("llm_allocator_plan_gpus", "GPUs the live plan rents", registry=r)
        self.generation = Gauge(
            "llm_allocator_generation", "Generation of the cluster spec", registry=r
        )
        self.observed_generation = Gauge(
            "llm_allocator_observed_generation",
            "Generation the live plan was computed for",
            registry=r,
        )
        self.generation_lag = Gauge(
            "llm_allocator_generation_lag",
            "Generations the live plan is behind the spec",
            registry=r,
        )
        self.spec_updates = Counter(
            "llm_allocator_spec_updates",
            "Accepted changes to the cluster spec, by source (api, forecast, calibration)",
            ["source"],
            registry=r,
        )
        self.observations = Counter(
            "llm_allocator_observations",
            "Observations ingested, by kind (demand windows, latency points)",
            ["kind"],
            registry=r,
        )
        self.audits = Gauge("llm_allocator_audits", "Audit records by state", ["state"], registry=r)
        self.http_seconds = Histogram(
            "llm_allocator_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
            registry=r,
        )
        for state in AUDIT_STATES:
            self.audits.labels(state).set(0)

    def set_generations(self, generation: int, observed: int | None) -> None:
        self.generation.set(generation)
        if observed is not None:
            self.observed_generation.set(observed)
        self.generation_lag.set(generation - (observed or 0))

    def set_plan(self, plan: dict[str, Any], analysis: dict[str, Any]) -> None:
        self.plan_cost.set(float(plan.get("cost", {}).get("total") or 0.0))
        self.plan_feasible.set(1.0 if plan.get("feasible") else 0.0)
        self.plan_gpus.set(sum(int(d.get("gpus", 0)) for d in plan.get("deployments", [])))
        types = analysis.get("query_types", [])
        demand = sum(float(t.get("demand_rps") or 0.0) for t in types)
        if demand > 0:
            unmet = sum(
                float(t.get("demand_rps") or 0.0) * float(t.get("unmet_fraction") or 0.0)
                for t in types
            )
            self.plan_unmet.set(unmet / demand)
        else:
            self.plan_unmet.set(0.0)

    def set_audit_counts(self, counts: dict[str, int]) -> None:
        for state in AUDIT_STATES:
            self.audits.labels(state).set(counts.get(state, 0))


class HttpMetricsMiddleware:
    """Times every request and labels it with the route *template* (`/v1/plan/{version}`),
    so label cardinality stays bounded; unmatched paths share one label."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.http_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )
