"""Prometheus metrics, in a registry owned by one app instance (tests build many
apps in one process; the global default registry would collide)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.service.http import RouteTable

PREFIX = "llm_allocator_"
AUDIT_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.replans = self._counter("replans", "Re-plans attempted, by outcome", ["outcome"])
        self.improvements = self._counter(
            "improvements",
            "Background improvement solves, by outcome (published, not_better, stopped, "
            "superseded, failed)",
            ["outcome"],
        )
        self.improvement_savings = self._counter(
            "improvement_savings_dollars",
            "$ per policy horizon saved by published improvements (change cost included)",
        )
        self.solve_seconds = self._histogram(
            "solve_seconds",
            "Wall time of solves, by kind (reconcile, improvement, whatif)",
            ["kind"],
            (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
        )
        self.plan_cost = self._gauge(
            "plan_cost_dollars", "Objective of the live plan, $ per policy horizon"
        )
        self.plan_unmet = self._gauge(
            "plan_unmet_fraction",
            "Demand-weighted fraction of requests the live plan leaves unserved",
        )
        self.plan_feasible = self._gauge("plan_feasible", "1 if the live plan passes the evaluator")
        self.plan_gpus = self._gauge("plan_gpus", "GPUs the live plan rents")
        self.generation = self._gauge("generation", "Generation of the cluster spec")
        self.observed_generation = self._gauge(
            "observed_generation", "Generation the live plan was computed for"
        )
        self.generation_lag = self._gauge(
            "generation_lag", "Generations the live plan is behind the spec"
        )
        self.spec_updates = self._counter(
            "spec_updates",
            "Accepted changes to the cluster spec, by source (api, forecast, calibration)",
            ["source"],
        )
        self.observations = self._counter(
            "observations",
            "Observations ingested, by kind (demand windows, latency points)",
            ["kind"],
        )
        self.audits = self._gauge("audits", "Audit records by state", ["state"])
        self.http_seconds = self._histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        for state in AUDIT_STATES:
            self.audits.labels(state).set(0)

    # Every metric is `llm_allocator_<name>` in this instance's registry.

    def _counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(f"{PREFIX}{name}", doc, labels, registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(f"{PREFIX}{name}", doc, labels, registry=self.registry)

    def _histogram(
        self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        return Histogram(f"{PREFIX}{name}", doc, labels, buckets=buckets, registry=self.registry)

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
    so label cardinality stays bounded; paths no route has share the label `unmatched`.
    The template comes from the route table, not from the router's match, so that
    answers given in front of the router (HEAD, an idempotent replay, a 413) carry
    it too."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: RouteTable) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

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
            template = self.routes.template(scope) or "unmatched"
            self.metrics.http_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )
