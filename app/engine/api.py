"""The engine's facade: the only module the service and the CLI import from the
engine (besides the types of `app.engine.contracts` and `app.engine.errors`).

Typed calls take and return the frozen contracts (`SolveRequest` ->
`SolveResult`, `EvaluateRequest` -> `Evaluation`, `AuditRequest` ->
`MilpResult`, `replan` -> `Replan`); they pickle, so they cross the service's
process boundary as they are. The `*_documents` functions wrap them for JSON in
and out (the CLI, scripts and tests).

Documents
---------
scenario document  {"query_types": [...], "models": [...], "gpus": [...],
                    "precisions": [...], "policy": {...}}   (see app.engine.model.schemas)
plan document      {"deployments": [{"id", "model", "gpu", "precision", "tp", "pp",
                     "replicas", "gpus", "utilization"}],
                    "routing": [{"query_type", "deployment", "fraction"}],
                    "unmet": [{"query_type", "fraction"}],
                    "cost": {"total", "rental", "storage", "unmet_penalty",
                             "delay_penalty", "change_cost"},
                    "feasible": bool,
                    "violations": [{"constraint", "subject", "message", "amount"}]}
solve result       SolveResult.to_document(): the solver's account (algorithm,
                   termination, status, objective, bound, gap, wall_s, ...) + plan

Errors: `app.engine.errors.InputError` (and subclasses) name the offending field;
everything else is a bug.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from app.engine.contracts import (
    AuditRequest,
    EvaluateRequest,
    ExactOptions,
    PlanAnalysis,
    SolveRequest,
    SolveResult,
    SolverOptions,
)
from app.engine.forecast import DemandObservation, ForecastConfig, TypeForecast, forecast_demand
from app.engine.model.catalog import catalog_gpu, catalog_model, catalog_precision
from app.engine.model.demo import demo_scenario_document
from app.engine.model.domain import GPU, Model, Policy, Precision, Scenario
from app.engine.model.schemas import (
    gpu_from_spec,
    model_from_spec,
    parse_scenario,
    precision_from_spec,
    scenario_to_document,
)
from app.engine.perf.calibration import Calibration, LatencyObservation, fit_calibration
from app.engine.perf.predict import PerfCase, PerfPrediction, deployment_error, estimate
from app.engine.perf.profiles import DEFAULT_ENGINE, ENGINE_NAMES
from app.engine.plan.candidates import candidate_table, enumerate_candidates
from app.engine.plan.diff import plan_diff
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.evaluation import Evaluation
from app.engine.plan.explain import explain_plan
from app.engine.plan.plan import Plan, plan_from_document, plan_of
from app.engine.solvers.agh import StopSignal
from app.engine.solvers.milp.audit import MilpResult
from app.engine.solvers.milp.audit import audit as milp_audit
from app.engine.solvers.solve import solve as run_solve

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINE_NAMES",
    "GPU",
    "Calibration",
    "DemandObservation",
    "ForecastConfig",
    "LatencyObservation",
    "Model",
    "PerfCase",
    "PerfPrediction",
    "Plan",
    "Policy",
    "Precision",
    "Replan",
    "Scenario",
    "TypeForecast",
    "audit",
    "audit_documents",
    "catalog_gpu",
    "catalog_model",
    "catalog_precision",
    "demo_scenario_document",
    "deployment_error",
    "estimate",
    "evaluate",
    "evaluate_documents",
    "explain",
    "fit_calibration",
    "forecast_demand",
    "gpu_from_spec",
    "model_from_spec",
    "normalize_scenario",
    "parse_plan",
    "parse_scenario",
    "plan_diff",
    "plan_of",
    "planning_pairs",
    "precision_from_spec",
    "replan",
    "solve",
    "solve_documents",
]


# ----------------------------------------------------------------------- parsing


def normalize_scenario(doc: Any) -> dict[str, Any]:
    """Validate a scenario document and return it with every default filled in.
    Raises ScenarioError naming the field."""
    return scenario_to_document(parse_scenario(doc))


def planning_pairs(scenario: Scenario) -> tuple[int, int]:
    """(candidate deployments, query types x candidates): the pairs a solve of
    `scenario` evaluates, what its memory and its candidate table's build time grow
    with: on the 12-GPU catalog (3,715 candidates) a re-plan of 1,000 types peaked
    at 1 GB (about 250 bytes a pair); the table of 10,000 types took 29 s, 6.3 GB."""
    candidates = len(enumerate_candidates(scenario)[0])
    return candidates, candidates * len(scenario.query_types)


def parse_plan(doc: Any) -> Plan:
    """A plan document's decisions (PlanFormatError naming the field)."""
    return plan_from_document(doc)


# ------------------------------------------------------------------- typed calls


def solve(request: SolveRequest, stop: StopSignal | None = None) -> SolveResult:
    """Plan with GH, AGH or the MILP (`request.options`)."""
    return run_solve(request.scenario, current=request.current, options=request.options, stop=stop)


def evaluate(request: EvaluateRequest) -> Evaluation:
    """The one evaluator: cost, constraints, violations, per-type service, stress."""
    return evaluate_plan(
        request.scenario,
        request.plan,
        current=request.current,
        delay_factor=request.delay_factor,
        error_factor=request.error_factor,
        demand_factor=request.demand_factor,
    )


def audit(request: AuditRequest, cancel: threading.Event | None = None) -> MilpResult:
    """Exact MILP audit under a hard wall-clock limit (`cancel` kills the solver
    within a second): the reference plan's certified gap to the proven bound."""
    o = request.options
    return milp_audit(
        request.scenario,
        request.reference,
        time_limit_s=request.time_limit_s,
        relative_gap=o.relative_gap,
        threads=o.threads,
        backend=o.backend,
        cancel=cancel,
    )


def explain(scenario: Scenario, plan: Plan, evaluation: Evaluation | None = None) -> dict[str, Any]:
    """Why the plan is what it is: per query type its routes, its cheapest
    alternatives, the constraints that bind, and why demand is unmet when it is."""
    return explain_plan(scenario, plan, evaluation)


@dataclass(frozen=True, slots=True)
class Replan:
    """A re-plan and everything the service publishes with it, computed where the
    solve ran: the result, its analysis and its explanation (one candidate table,
    one evaluation)."""

    result: SolveResult
    analysis: PlanAnalysis
    explanation: dict[str, Any] | None  # None: `explain_if` said no


def replan(
    request: SolveRequest,
    stop: StopSignal | None = None,
    explain_if: Callable[[SolveResult], bool] | None = None,
) -> Replan:
    """Solve, then analyse and explain the plan from the solve's own evaluation and
    candidate table (nothing is parsed, built or evaluated twice). `explain_if`:
    explain only a result it accepts (a background improvement explains only a
    plan it will publish)."""
    table = candidate_table(request.scenario)
    result = run_solve(
        request.scenario,
        current=request.current,
        options=request.options,
        table=table,
        stop=stop,
    )
    explanation = (
        explain_plan(request.scenario, result.plan, result.evaluation, table)
        if explain_if is None or explain_if(result)
        else None
    )
    return Replan(result, PlanAnalysis.of(result.evaluation), explanation)


# ----------------------------------------------------------- JSON conveniences


def evaluate_documents(
    scenario_doc: Any,
    plan_doc: Any,
    current_plan_doc: Any | None = None,
    delay_factor: float = 1.0,
    error_factor: float = 1.0,
    demand_factor: float = 1.0,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """`evaluate` on documents: the evaluation document. `calibration`: the
    latency corrections to judge the plan under (the service's in force), as its
    re-plans do; None evaluates under the uncalibrated model."""
    scenario = parse_scenario(scenario_doc)
    if calibration is not None:
        scenario = replace(scenario, calibration=calibration)
    request = EvaluateRequest(
        scenario,
        plan_from_document(plan_doc),
        plan_from_document(current_plan_doc) if current_plan_doc else None,
        delay_factor,
        error_factor,
        demand_factor,
    )
    return evaluate(request).to_document()


def solve_documents(
    scenario_doc: Any,
    algorithm: str = "agh",
    time_budget_s: float = 1.0,
    seed: int = 0,
    current_plan_doc: Any | None = None,
    options: SolverOptions | None = None,
) -> dict[str, Any]:
    """`solve` on documents: the solve result document."""
    if options is None:
        options = SolverOptions.model_validate(
            {"algorithm": algorithm, "time_budget_s": time_budget_s, "seed": seed}
        )
    current = plan_from_document(current_plan_doc) if current_plan_doc else None
    return solve(SolveRequest(parse_scenario(scenario_doc), options, current)).to_document()


def audit_documents(
    scenario_doc: Any,
    reference_plan_doc: Any | None,
    time_limit_s: float,
    relative_gap: float = 1e-4,
    threads: int = 1,
    cancel: threading.Event | None = None,
    backend: str = "highs",
) -> dict[str, Any]:
    """`audit` on documents: the audit (MILP result) document."""
    request = AuditRequest(
        parse_scenario(scenario_doc),
        plan_from_document(reference_plan_doc) if reference_plan_doc else None,
        time_limit_s,
        ExactOptions.model_validate(
            {"relative_gap": relative_gap, "threads": threads, "backend": backend}
        ),
    )
    return audit(request, cancel).to_document()


def explain_documents(scenario_doc: Any, plan_doc: Any) -> dict[str, Any]:
    """`explain` on documents."""
    return explain(parse_scenario(scenario_doc), plan_from_document(plan_doc))
