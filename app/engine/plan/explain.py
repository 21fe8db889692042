"""Why a plan is what it is: per query type, where its traffic went and what the
alternatives were; which constraints bind; why demand is unmet when it is.

The explanation is derived, like everything else, from scenario + plan: the
candidate table says what each type *could* use and at what cost per request
(rental of the capacity one request/s needs, at the policy's headroom); the
evaluator says which constraints are at their bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.model.domain import Scenario
from app.engine.plan.candidates import CandidateTable, candidate_table
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.evaluation import Evaluation
from app.engine.plan.plan import Plan

_TOP = 3


def _cost_per_request(table: CandidateTable, i: int) -> np.ndarray:
    """$ per request of type i on each candidate: rental of the replica share one
    request/s needs (at the headroom), spread over the requests of one hour."""
    pol = table.scenario.policy
    with np.errstate(divide="ignore", invalid="ignore"):
        per_rps_hour = (
            table.price_per_gpu_hour
            * table.gpus_per_replica
            / (table.pairs.mu[i] * pol.max_utilization)
        )
    return np.where(table.feasible[i], per_rps_hour / 3600.0, np.inf)


@dataclass(frozen=True, slots=True)
class _Limits:
    """Which fleet-wide constraints bind in the plan being explained."""

    gpus: frozenset[str]
    budget: bool
    storage: bool
    none_available: bool  # every GPU type has 0 available


def explain_plan(
    scenario: Scenario,
    plan: Plan,
    evaluation: Evaluation | None = None,
    table: CandidateTable | None = None,
) -> dict[str, Any]:
    """The explanation document of `plan` (see the module docstring). Pass the
    evaluation and candidate table when they exist already (a solve has both)."""
    ev = evaluation or evaluate_plan(scenario, plan)
    table = table if table is not None else candidate_table(scenario)
    binding = ev.binding()
    kinds = {(b.constraint, b.subject) for b in binding}
    limits = _Limits(
        frozenset(b.subject for b in binding if b.constraint == "availability"),
        ("budget", "") in kinds,
        ("storage", "") in kinds,
        all(g.available == 0 for g in scenario.gpus),
    )
    routes: dict[str, list[tuple[str, float]]] = {}
    for r in plan.routing:
        routes.setdefault(r.query_type, []).append((r.deployment, r.fraction))
    return {
        "feasible": ev.feasible,
        "cost": ev.cost.to_document(),
        "binding_constraints": [
            {"constraint": b.constraint, "subject": b.subject, "lhs": b.lhs, "rhs": b.rhs}
            for b in binding
        ],
        "violations": [
            {"constraint": v.constraint, "subject": v.subject, "message": v.message}
            for v in ev.violations
        ],
        "query_types": [
            _explain_type(table, ev, i, routes.get(q.id, []), limits)
            for i, q in enumerate(scenario.query_types)
        ],
    }


def _explain_type(
    table: CandidateTable,
    ev: Evaluation,
    i: int,
    routes: list[tuple[str, float]],
    limits: _Limits,
) -> dict[str, Any]:
    """One query type: its routes, cheapest candidates, counts and reasons."""
    scenario = table.scenario
    q = scenario.query_types[i]
    cpr = _cost_per_request(table, i)
    err = table.pairs.error[i]
    ok_acc = table.feasible[i] & (err <= q.max_error_rate + 1e-12)
    order = np.argsort(np.where(ok_acc, cpr, np.inf))
    used = {dep for dep, _ in routes}
    cheapest = [
        {
            "deployment": table.ids[d],
            "cost_per_request": float(cpr[d]),
            "error_rate": float(err[d]),
            "gpu": scenario.gpus[table.gpu[d]].id,
            "max_concurrency": int(table.pairs.bstar[i, d]),
            "used": table.ids[d] in used,
        }
        for d in order[:_TOP]
        if np.isfinite(cpr[d])
    ]
    counts = {
        "total": table.size,
        "meet_slo": int((table.pairs.bstar[i] >= 1).sum()),
        "feasible": int(table.feasible[i].sum()),
        "accurate_enough": int(ok_acc.sum()),
    }
    report = next((t for t in ev.types if t.query_type == q.id), None)
    unmet = report.unmet_fraction if report else 0.0
    return {
        "query_type": q.id,
        "routes": [{"deployment": d, "fraction": f} for d, f in routes],
        "unmet_fraction": unmet,
        "candidates": counts,
        "cheapest_candidates": cheapest,
        "reasons": _reasons(ev, q.id, q.max_error_rate, cheapest, limits),
        "unmet_reasons": _unmet_reasons(q.unmet_penalty, unmet, counts, cheapest, limits),
    }


def _reasons(
    ev: Evaluation,
    qid: str,
    max_error: float,
    cheapest: list[dict[str, Any]],
    limits: _Limits,
) -> list[str]:
    """Why not the cheapest accurate-enough candidate; whether accuracy binds."""
    out = []
    if cheapest and not cheapest[0]["used"]:
        g = cheapest[0]["gpu"]
        if g in limits.gpus:
            out.append(
                f"the cheapest candidate {cheapest[0]['deployment']} runs on "
                f"{g}, whose availability is used up"
            )
        elif limits.budget:
            out.append("the budget binds")
        elif limits.storage:
            out.append("storage capacity binds: no room for another model copy")
        else:
            out.append(
                "sharing an already-rented deployment (spare capacity) or "
                "consolidation made another choice cheaper overall"
            )
    acc = next((s for s in ev.slacks if s.constraint == "accuracy" and s.subject == qid), None)
    if acc is not None and acc.slack <= 1e-3 * max(1.0, acc.rhs) and acc.rhs > 0:
        out.append(f"accuracy binds: traffic-weighted error is at max_error_rate {max_error}")
    return out


def _unmet_reasons(
    penalty: float,
    unmet: float,
    counts: dict[str, int],
    cheapest: list[dict[str, Any]],
    limits: _Limits,
) -> list[str]:
    """Why demand is unmet, when it is."""
    if unmet <= 1e-9:
        return []
    out = []
    if counts["total"] == 0:
        # candidates exist only where a replica fits in memory and can be rented
        # (tp·pp <= available): say which of the two left none
        out.append(
            "no GPUs are available"
            if limits.none_available
            else "no deployment fits in memory on a GPU type with enough GPUs available"
        )
    elif counts["feasible"] == 0:
        out.append(
            "no candidate meets the TTFT/TPOT/e2e SLOs within memory"
            if counts["meet_slo"] == 0
            else "no model with a known error rate meets the SLOs"
        )
    elif counts["accurate_enough"] == 0:
        out.append(
            "no candidate is accurate enough on its own and mixing is limited by the accuracy bound"
        )
    if limits.gpus and not limits.none_available:
        out.append("availability binds on " + ", ".join(sorted(limits.gpus)))
    if limits.budget:
        out.append("the budget binds")
    if limits.storage:
        out.append("storage capacity binds")
    if cheapest and penalty < cheapest[0]["cost_per_request"]:
        out.append(
            f"the unmet penalty (${penalty}/request) is below the cheapest serving cost "
            f"(${cheapest[0]['cost_per_request']:.5f}/request)"
        )
    return out or ["capacity left after serving other types ran out"]
