"""Stress study (issue #5, SPEC §5): how plans made for the modelled world fare when
latency, error and demand turn out worse than modelled.

    python3 bench/stress.py                     # everything, about 3 minutes
    python3 bench/stress.py --milp-limit 30     # shorter MILP limit (default 120 s)

Plans, each made once and then held fixed:

* AGH  — the service's planner, headroom max_utilization 0.8 (the demo's policy);
* GH   — the single greedy pass, same headroom;
* MILP u=0.8 — the exact cost-minimal plan *at the same headroom* as AGH;
* MILP u=1.0 — the exact cost-minimal plan with no headroom at all: the paper's
  "cost-minimal MILP" (the paper's MILP has no max_utilization).

Scenarios: the demo scenario, and a critical-budget variant: budget = 0.8 x the
rental of the AGH plan on the demo, and every type's max_unmet_fraction raised to
at least 0.3 so a plan within the budget exists (the paper's critical budget is
0.72 x its normal budget; 0.8 keeps our smaller fleet servable).

Each plan is evaluated by the one evaluator (`evaluate_plan`, its stress mode) on
three axes, factor f in 1.0, 1.1, ..., 1.5:

* inflation — delay and error x f (the paper's stress), demand as modelled;
* demand    — demand x f, latency and error as modelled;
* combined  — all three x f.

Reported per point: realised cost ($ per hour: rental + penalties for planned unmet
and for every violating request at its type's unmet penalty), SLO-violating share
of demand (latency), accuracy-violating share (requests answered wrongly beyond
the type's error bound), total violation share (a request counted once).
The evaluator skips the stress report at exactly (1, 1, 1); the 1.0 row is taken
with demand x (1 + 1e-12), which changes nothing measurable.

Headroom sweep: max_utilization in 0.6 ... 1.0, re-plan with AGH (and, as a
reference, the exact MILP at the same headroom) and evaluate at 1.5x on every axis.

Output: bench/results/stress.json (all numbers) and markdown tables on stdout.
Seeded (AGH seed 0); AGH runs until it converges or hits --agh-budget seconds
(its termination is recorded — "deadline" means a slower machine could differ).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from provenance import git_rev, machine

from app.engine.model.demo import demo_scenario
from app.engine.model.domain import Scenario
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.plan import Plan
from app.engine.solvers.milp.audit import solve_milp
from app.engine.solvers.solve import solve

ROOT = Path(__file__).resolve().parents[1]
FACTORS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5)
AXES: dict[str, tuple[bool, bool, bool]] = {
    # which of (delay, error, demand) get the factor
    "inflation": (True, True, False),
    "demand": (False, False, True),
    "combined": (True, True, True),
}
HEADROOMS = (0.6, 0.7, 0.8, 0.9, 1.0)
PLANNERS = ("AGH", "GH", "MILP u=0.8", "MILP u=1.0")
OUT = ROOT / "bench" / "results" / "stress.json"


def with_policy(s: Scenario, **kw: Any) -> Scenario:
    return replace(s, policy=replace(s.policy, **kw))


def critical_variant(
    s: Scenario, reference_rental: float, budget_share: float = 0.8, max_unmet: float = 0.3
) -> Scenario:
    """Budget = `budget_share` x the reference plan's rental; every type may leave at
    least `max_unmet` of its demand unserved (at its unmet penalty)."""
    qts = tuple(
        replace(q, max_unmet_fraction=max(q.max_unmet_fraction, max_unmet)) for q in s.query_types
    )
    return replace(
        s, query_types=qts, policy=replace(s.policy, budget=budget_share * reference_rental)
    )


def stress_point(
    s: Scenario, plan: Plan, delay: float, error: float, demand: float
) -> dict[str, float]:
    """One stress evaluation; the shares are fractions of the (scaled) demand."""
    if (delay, error, demand) == (1.0, 1.0, 1.0):
        demand = 1.0 + 1e-12  # the evaluator reports stress only off (1, 1, 1)
    st = evaluate_plan(s, plan, delay_factor=delay, error_factor=error, demand_factor=demand).stress
    assert st is not None
    return {
        "realised_cost": st.realised_cost,
        "slo_violation_share": st.slo_violation_share,
        "accuracy_violation_share": st.accuracy_violation_share,
        "violation_share": st.violation_share,
        "unmet_share": st.unmet_rps / st.demand_rps if st.demand_rps > 0 else 0.0,
    }


def stress_grid(s: Scenario, plan: Plan) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    for axis, (on_d, on_e, on_q) in AXES.items():
        rows = []
        for f in FACTORS:
            p = stress_point(s, plan, f if on_d else 1.0, f if on_e else 1.0, f if on_q else 1.0)
            rows.append({"factor": f, **p})
        out[axis] = rows
    return out


class NoPlan(Exception):
    """The MILP proved the scenario infeasible (or found no plan in time)."""


def make_plan(s: Scenario, planner: str, args: argparse.Namespace) -> tuple[Plan, dict[str, Any]]:
    """Plan with one of PLANNERS ("MILP" alone: the MILP at the scenario's own
    headroom); returns the plan and what to record about it."""
    t0 = time.monotonic()
    meta: dict[str, Any] = {}
    if planner in ("AGH", "GH"):
        o = solve(s, planner.lower(), time_budget_s=args.agh_budget, seed=args.seed)
        plan, planned = o.plan, s
        meta.update(termination=o.termination, starts=o.starts, iterations=o.iterations)
    else:
        planned = s
        if planner != "MILP":  # "MILP u=0.8" / "MILP u=1.0"
            planned = with_policy(s, max_utilization=float(planner.split("=")[1]))
        warm = solve(planned, "gh").plan  # CBC's first incumbent, so a plan always exists
        r = solve_milp(planned, time_limit_s=args.milp_limit, warm_start=warm)
        if r.plan is None:
            raise NoPlan(f"{planner}: no MILP plan ({r.termination}: {r.message})")
        plan = r.plan
        meta.update(
            termination=r.termination,
            solution_status=r.solution_status,
            bound=r.bound,
            relative_gap=r.relative_gap,
            optimal=r.termination == "optimal",
        )
    ev = evaluate_plan(planned, plan)
    meta.update(
        wall_s=time.monotonic() - t0,
        max_utilization=planned.policy.max_utilization,
        planned_cost=ev.cost.to_document(),
        feasible=ev.feasible,
        violations=[v.message for v in ev.violations],
        gpus=ev.total_gpus,
        gpus_by_type=dict(sorted(ev.gpus_by_type.items())),
        unmet=dict(plan.unmet),
        deployments=[f"{d.id} x{d.replicas}" for d in plan.deployments],
    )
    return plan, meta


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.monotonic()
    base = demo_scenario()
    agh_plan, agh_meta = make_plan(base, "AGH", args)
    ref_rental = float(agh_meta["planned_cost"]["rental"])
    scenarios = {
        "demo": base,
        "critical": critical_variant(base, ref_rental, args.budget_share, args.max_unmet),
    }
    result: dict[str, Any] = {
        "meta": {
            "command": "python3 " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "git": git_rev(),
            "machine": machine(),
            "seed": args.seed,
            "agh_budget_s": args.agh_budget,
            "milp_time_limit_s": args.milp_limit,
            "factors": list(FACTORS),
            "axes": {
                k: [n for n, on in zip(("delay", "error", "demand"), v, strict=True) if on]
                for k, v in AXES.items()
            },
            "critical": {
                "budget_share_of_agh_rental": args.budget_share,
                "agh_rental_on_demo": ref_rental,
                "budget": args.budget_share * ref_rental,
                "max_unmet_fraction_at_least": args.max_unmet,
            },
            "money_unit": "$ per hour (horizon 1 h)",
        },
        "scenarios": {},
        "headroom": {},
    }
    for name, s in scenarios.items():
        entry: dict[str, Any] = {"plans": {}, "stress": {}}
        for planner in PLANNERS:
            if name == "demo" and planner == "AGH":
                plan, meta = agh_plan, agh_meta
            else:
                plan, meta = make_plan(s, planner, args)
            entry["plans"][planner] = meta
            entry["stress"][planner] = stress_grid(s, plan)
            print(
                f"[{name}] {planner}: planned ${meta['planned_cost']['total']:.2f}, "
                f"{meta['gpus']} GPUs, {meta['termination']}, {meta['wall_s']:.1f} s",
                file=sys.stderr,
            )
        result["scenarios"][name] = entry

        sweep: dict[str, list[dict[str, Any]]] = {"AGH": [], "MILP": []}
        for mu in HEADROOMS:
            s_mu = with_policy(s, max_utilization=mu)
            for key in ("AGH", "MILP"):
                try:
                    plan, m = make_plan(s_mu, key, args)
                except NoPlan as exc:
                    sweep[key].append({"max_utilization": mu, "no_plan": str(exc)})
                    continue
                ev = evaluate_plan(s_mu, plan)
                info = {"termination": m["termination"], "wall_s": m["wall_s"]}
                at15 = {
                    axis: stress_point(
                        s_mu,
                        plan,
                        1.5 if on_d else 1.0,
                        1.5 if on_e else 1.0,
                        1.5 if on_q else 1.0,
                    )
                    for axis, (on_d, on_e, on_q) in AXES.items()
                }
                sweep[key].append(
                    {
                        "max_utilization": mu,
                        "planned_cost": ev.cost.total,
                        "rental": ev.cost.rental,
                        "feasible": ev.feasible,
                        "gpus": ev.total_gpus,
                        "gpus_by_type": dict(sorted(ev.gpus_by_type.items())),
                        "at_1_5": at15,
                        **info,
                    }
                )
            print(f"[{name}] headroom {mu} done", file=sys.stderr)
        result["headroom"][name] = sweep
    result["meta"]["wall_s"] = time.monotonic() - t_start
    return result


# ------------------------------------------------------------------------------------
# Markdown


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def markdown(res: dict[str, Any]) -> str:
    out: list[str] = []
    for name, entry in res["scenarios"].items():
        out.append(f"#### {name}: the plans (planned for the modelled world)\n")
        out.append(
            "| plan | headroom | planned $/h | rental $/h | unmet penalty $/h | GPUs "
            "| GPUs by type | feasible | solver end | wall s |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for planner, m in entry["plans"].items():
            c = m["planned_cost"]
            gbt = ", ".join(f"{k} {v}" for k, v in m["gpus_by_type"].items())
            end = m["termination"]
            if m.get("relative_gap") is not None and not m.get("optimal"):
                end += f" (gap {pct(m['relative_gap'])})"
            out.append(
                f"| {planner} | {m['max_utilization']} | {c['total']:.2f} | {c['rental']:.2f} "
                f"| {c['unmet_penalty']:.2f} | {m['gpus']} | {gbt} | "
                f"{'yes' if m['feasible'] else 'NO: ' + '; '.join(m['violations'])[:120]} "
                f"| {end} | {m['wall_s']:.1f} |"
            )
        out.append("")
        for axis in AXES:
            what = {
                "inflation": "delay and error x f, demand as modelled",
                "demand": "demand x f",
                "combined": "delay, error and demand x f",
            }[axis]
            out.append(f"#### {name}, {axis} ({what})\n")
            out.append(
                "Each cell: realised $/h · SLO-violating share · accuracy-violating share "
                "· total violating share.\n"
            )
            planners = list(entry["stress"])
            out.append("| f | " + " | ".join(planners) + " |")
            out.append("|---" * (len(planners) + 1) + "|")
            for k, f in enumerate(FACTORS):
                cells = []
                for p in planners:
                    r = entry["stress"][p][axis][k]
                    cells.append(
                        f"${r['realised_cost']:.0f} · {pct(r['slo_violation_share'])} · "
                        f"{pct(r['accuracy_violation_share'])} · {pct(r['violation_share'])}"
                    )
                out.append(f"| {f:.1f} | " + " | ".join(cells) + " |")
            out.append("")
    for name, sweep in res["headroom"].items():
        out.append(f"#### {name}: headroom sweep (re-planned at each max_utilization), at 1.5x\n")
        out.append(
            "| planner | max_util | planned $/h | GPUs | inflation 1.5: $ · viol. "
            "| demand 1.5: $ · viol. | combined 1.5: $ · viol. |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for key, rows in sweep.items():
            for r in rows:
                if "no_plan" in r:
                    out.append(f"| {key} | {r['max_utilization']} | no plan: infeasible | | | | |")
                    continue
                cells = [
                    f"${r['at_1_5'][a]['realised_cost']:.0f} · "
                    f"{pct(r['at_1_5'][a]['violation_share'])}"
                    for a in AXES
                ]
                out.append(
                    f"| {key} | {r['max_utilization']} | {r['planned_cost']:.2f} | {r['gpus']} | "
                    + " | ".join(cells)
                    + " |"
                )
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--agh-budget", type=float, default=5.0, help="AGH time budget, s")
    ap.add_argument("--milp-limit", type=float, default=120.0, help="MILP time limit, s")
    ap.add_argument("--budget-share", type=float, default=0.8)
    ap.add_argument("--max-unmet", type=float, default=0.3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    res = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=float) + "\n", encoding="utf-8")
    print(markdown(res))
    print(f"\nwrote {args.out} in {res['meta']['wall_s']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
