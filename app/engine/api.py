"""The engine's facade: JSON documents in, JSON documents out.

This is the only module the service (and the CLI) import from the engine. Every
function takes and returns plain JSON-able values so it can run in a worker
process (arguments and results pickle cheaply) and so the API's field names are
exactly the engine's.

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
solve result       {"algorithm", "plan": <plan document>, "objective", "termination",
                    "wall_s", "iterations", "starts", "warm_start_used", "seed",
                    "time_budget_s"}

Errors: `app.engine.errors.InputError` (and subclasses) name the offending field;
everything else is a bug.
"""

from __future__ import annotations

import threading
from typing import Any

from app.engine.model.demo import demo_scenario_document
from app.engine.model.schemas import parse_scenario, scenario_to_document
from app.engine.plan.evaluate import evaluate_plan, plan_document
from app.engine.plan.plan import plan_from_document

__all__ = [
    "audit_documents",
    "demo_scenario_document",
    "evaluate_documents",
    "explain_documents",
    "normalize_scenario",
    "solve_documents",
]


def normalize_scenario(doc: Any) -> dict[str, Any]:
    """Validate a scenario document and return it with every default filled in.
    Raises ScenarioError naming the field."""
    return scenario_to_document(parse_scenario(doc))


def evaluate_documents(
    scenario_doc: Any,
    plan_doc: Any,
    current_plan_doc: Any | None = None,
    delay_factor: float = 1.0,
    error_factor: float = 1.0,
    demand_factor: float = 1.0,
) -> dict[str, Any]:
    """Evaluate a plan against a scenario; returns the evaluation document
    (cost breakdown, per-constraint slack, violations, per-type service, and
    when any factor != 1 the stress figures)."""
    scenario = parse_scenario(scenario_doc)
    plan = plan_from_document(plan_doc)
    current = plan_from_document(current_plan_doc) if current_plan_doc else None
    ev = evaluate_plan(
        scenario,
        plan,
        current=current,
        delay_factor=delay_factor,
        error_factor=error_factor,
        demand_factor=demand_factor,
    )
    return ev.to_document()


def solve_documents(
    scenario_doc: Any,
    algorithm: str = "agh",
    time_budget_s: float = 1.0,
    seed: int = 0,
    current_plan_doc: Any | None = None,
) -> dict[str, Any]:
    """Plan for a scenario with GH or AGH (warm-started from `current_plan_doc`
    when given, with the policy's change cost), or with the MILP
    (`algorithm="milp"`, `time_budget_s` is then its time limit)."""
    from app.engine.solvers.solve import solve

    scenario = parse_scenario(scenario_doc)
    current = plan_from_document(current_plan_doc) if current_plan_doc else None
    outcome = solve(
        scenario, algorithm=algorithm, time_budget_s=time_budget_s, seed=seed, current=current
    )
    return outcome.to_document()


def audit_documents(
    scenario_doc: Any,
    reference_plan_doc: Any | None,
    time_limit_s: float,
    relative_gap: float = 1e-4,
    threads: int = 1,
    cancel: threading.Event | None = None,
    backend: str = "cbc",
) -> dict[str, Any]:
    """Exact MILP audit: solve the scenario's MILP under a hard wall-clock limit
    (cancellable through `cancel`, which kills the solver process within 1 s) and
    report the reference plan's certified gap to the proven bound."""
    from app.engine.solvers.milp.audit import audit

    scenario = parse_scenario(scenario_doc)
    reference = plan_from_document(reference_plan_doc) if reference_plan_doc else None
    result = audit(
        scenario,
        reference,
        time_limit_s=time_limit_s,
        relative_gap=relative_gap,
        threads=threads,
        cancel=cancel,
        backend=backend,
    )
    return result.to_document()


def plan_document_for(scenario_doc: Any, plan_doc: Any) -> dict[str, Any]:
    """Re-derive a full plan document (costs, utilization, feasibility) from its
    decisions, e.g. after the scenario changed under a stored plan."""
    scenario = parse_scenario(scenario_doc)
    plan = plan_from_document(plan_doc)
    return plan_document(scenario, plan, evaluate_plan(scenario, plan))


def explain_documents(scenario_doc: Any, plan_doc: Any) -> dict[str, Any]:
    """Why the plan is what it is: per query type its routes, its cheapest
    alternatives, the constraints that bind, and why demand is unmet when it is."""
    from app.engine.plan.explain import explain_plan

    scenario = parse_scenario(scenario_doc)
    plan = plan_from_document(plan_doc)
    return explain_plan(scenario, plan)
