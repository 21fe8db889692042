"""Why a plan is what it is: per query type, where its traffic went and what the
alternatives were; which constraints bind; why demand is unmet when it is.

The explanation is derived, like everything else, from scenario + plan: the
candidate table says what each type *could* use and at what cost per request
(rental of the capacity one request/s needs, at the policy's headroom); the
evaluator says which constraints are at their bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.engine.model.domain import Scenario
from app.engine.plan.candidates import CandidateTable, candidate_table
from app.engine.plan.evaluate import Evaluation, evaluate_plan
from app.engine.plan.plan import Plan

_TOP = 3


def _cost_per_request(table: CandidateTable, i: int) -> np.ndarray:
    """$ per request of type i on each candidate: rental of the replica share one
    request/s needs (at the headroom), spread over the requests of one hour."""
    pol = table.scenario.policy
    with np.errstate(divide="ignore", invalid="ignore"):
        per_rps_hour = table.price_per_gpu_hour * table.gpus_per_replica / (
            table.pairs.mu[i] * pol.max_utilization)
    return np.where(table.feasible[i], per_rps_hour / 3600.0, np.inf)


def explain_plan(scenario: Scenario, plan: Plan, evaluation: Evaluation | None = None
                 ) -> dict[str, Any]:
    ev = evaluation or evaluate_plan(scenario, plan)
    table = candidate_table(scenario)
    binding = ev.binding()
    bind_kinds = {(b.constraint, b.subject) for b in binding}
    gpu_bound = {b.subject for b in binding if b.constraint == "availability"}
    budget_bound = ("budget", "") in bind_kinds
    storage_bound = ("storage", "") in bind_kinds
    routes_by_type: dict[str, list[tuple[str, float]]] = {}
    for r in plan.routing:
        routes_by_type.setdefault(r.query_type, []).append((r.deployment, r.fraction))

    types_out = []
    for i, q in enumerate(scenario.query_types):
        cpr = _cost_per_request(table, i)
        err = table.pairs.error[i]
        ok_acc = table.feasible[i] & (err <= q.max_error_rate + 1e-12)
        order = np.argsort(np.where(ok_acc, cpr, np.inf))
        cheapest = [
            {
                "deployment": table.ids[d],
                "cost_per_request": float(cpr[d]),
                "error_rate": float(err[d]),
                "gpu": scenario.gpus[table.gpu[d]].id,
                "max_concurrency": int(table.pairs.bstar[i, d]),
                "used": any(dep == table.ids[d] for dep, _ in routes_by_type.get(q.id, [])),
            }
            for d in order[:_TOP] if np.isfinite(cpr[d])
        ]
        n_all = table.size
        n_slo = int((table.pairs.bstar[i] >= 1).sum())
        n_feasible = int(table.feasible[i].sum())
        n_acc = int(ok_acc.sum())
        reasons = []
        # Why not the cheapest accurate-enough candidate?
        if cheapest and not cheapest[0]["used"]:
            g = cheapest[0]["gpu"]
            if g in gpu_bound:
                reasons.append(f"the cheapest candidate {cheapest[0]['deployment']} runs on "
                               f"{g}, whose availability is used up")
            elif budget_bound:
                reasons.append("the budget binds")
            elif storage_bound:
                reasons.append("storage capacity binds: no room for another model copy")
            else:
                reasons.append("sharing an already-rented deployment (spare capacity) or "
                               "consolidation made another choice cheaper overall")
        acc = next((s for s in ev.slacks if s.constraint == "accuracy" and s.subject == q.id),
                   None)
        if acc is not None and acc.slack <= 1e-3 * max(1.0, acc.rhs) and acc.rhs > 0:
            reasons.append(f"accuracy binds: traffic-weighted error is at max_error_rate "
                           f"{q.max_error_rate}")
        tr = next((t for t in ev.types if t.query_type == q.id), None)
        unmet = tr.unmet_fraction if tr else 0.0
        unmet_why = []
        if unmet > 1e-9:
            if n_feasible == 0:
                unmet_why.append("no candidate meets the TTFT/TPOT/e2e SLOs within memory" if
                                 n_slo == 0 else "no model with a known error rate meets the SLOs")
            elif n_acc == 0:
                unmet_why.append("no candidate is accurate enough on its own and mixing is "
                                 "limited by the accuracy bound")
            if gpu_bound:
                unmet_why.append("availability binds on " + ", ".join(sorted(gpu_bound)))
            if budget_bound:
                unmet_why.append("the budget binds")
            if storage_bound:
                unmet_why.append("storage capacity binds")
            if cheapest and q.unmet_penalty < cheapest[0]["cost_per_request"]:
                unmet_why.append(f"the unmet penalty (${q.unmet_penalty}/request) is below "
                                 f"the cheapest serving cost "
                                 f"(${cheapest[0]['cost_per_request']:.5f}/request)")
            if not unmet_why:
                unmet_why.append("capacity left after serving other types ran out")
        types_out.append({
            "query_type": q.id,
            "routes": [{"deployment": d, "fraction": f} for d, f in routes_by_type.get(q.id, [])],
            "unmet_fraction": unmet,
            "candidates": {"total": n_all, "meet_slo": n_slo, "feasible": n_feasible,
                           "accurate_enough": n_acc},
            "cheapest_candidates": cheapest,
            "reasons": reasons,
            "unmet_reasons": unmet_why,
        })
    return {
        "feasible": ev.feasible,
        "cost": ev.cost.to_document(),
        "binding_constraints": [
            {"constraint": b.constraint, "subject": b.subject, "lhs": b.lhs, "rhs": b.rhs}
            for b in binding
            # coverage always holds with equality; a zero unmet cap is a rule, not a limit
            if b.constraint != "coverage" and not (b.constraint == "unmet_cap" and b.rhs == 0)
        ],
        "violations": [
            {"constraint": v.constraint, "subject": v.subject, "message": v.message}
            for v in ev.violations
        ],
        "query_types": types_out,
    }
