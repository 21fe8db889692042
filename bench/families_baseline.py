"""Baseline of today's GH and AGH against proven optima on the instance families of
`app/research/families.py` (instances built outside the project's own generator).

    nice -n 10 python3 bench/families_baseline.py                 # full set, 120 s per MILP
    nice -n 10 python3 bench/families_baseline.py --time-limit 60 --only scarce
    python3 bench/families_baseline.py --report                   # markdown from the JSON

Per instance of `benchmark_set()` (and, with `--timing`, of `timing_set()`):
* the exact optimum with CBC and with HiGHS (`solve_milp(..., relative_gap=1e-6)`,
  one thread, no warm start): termination, evaluator objective, best bound, wall
  time, time to proof (None unless termination is "optimal");
* GH, and AGH (seed 0) with time budgets 1 s and 5 s: evaluator cost, feasibility
  and violations, termination, wall time, time to best, the plan;
* derived: the reference value (the best proven optimum; else the best bound,
  marked), each heuristic's gap (cost − ref)/ref, and whether its plan is
  infeasible although the MILP found a feasible plan.

Solvers run one at a time, each with one thread. The JSON (`--json`) holds every
raw number and is rewritten after each instance, so a cut-short run keeps what
it measured; the markdown (`--md`) is generated from it and keeps any section
from "## Diagnosis" on that is already in the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from provenance import git_rev, machine  # noqa: E402

from app.engine.model.schemas import parse_scenario  # noqa: E402
from app.engine.plan.candidates import candidate_table  # noqa: E402
from app.engine.plan.evaluation import Evaluation  # noqa: E402
from app.engine.plan.plan import Plan  # noqa: E402
from app.engine.solvers.milp.audit import solve_milp  # noqa: E402
from app.engine.solvers.milp.backends.cbc import cbc_version  # noqa: E402
from app.engine.solvers.milp.backends.highs import highs_version  # noqa: E402
from app.engine.solvers.solve import solve  # noqa: E402
from app.research.benchmark_sets import Instance, benchmark_set, timing_set  # noqa: E402

RESULTS = ROOT / "bench" / "results"
HEURISTICS = ("gh", "agh1", "agh5")
DIAGNOSIS_MARK = "## Diagnosis"


def plan_summary(plan: Plan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {
        "deployments": {d.id: d.replicas for d in plan.deployments},
        "routing": [[r.query_type, r.deployment, round(r.fraction, 6)] for r in plan.routing],
        "unmet": {q: round(f, 6) for q, f in plan.unmet.items() if f > 0},
    }


def eval_summary(ev: Evaluation | None) -> dict[str, Any] | None:
    if ev is None:
        return None
    return {
        "feasible": ev.feasible,
        "objective": ev.objective,
        "cost": ev.cost.to_document(),
        "violations": [
            {"constraint": v.constraint, "subject": v.subject, "amount": v.amount}
            for v in ev.violations
        ],
    }


def run_milp(scenario: Any, backend: str, limit: float) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        r = solve_milp(scenario, time_limit_s=limit, backend=backend, relative_gap=1e-6)
    except Exception as exc:  # record and go on: one broken solve must not end the run
        return {
            "backend": backend,
            "termination": "error",
            "message": repr(exc),
            "wall_s": time.monotonic() - t0,
        }
    return {
        "backend": backend,
        "solver_version": r.solver_version,
        "termination": r.termination,
        "solution_status": r.solution_status,
        "objective": r.objective,
        "solver_objective": r.solver_objective,
        "bound": r.bound,
        "relative_gap": r.relative_gap,
        "feasible": r.feasible,
        "wall_s": r.wall_s,
        "build_s": r.build_s,
        "solve_s": r.solve_s,
        "time_to_proof_s": r.wall_s if r.termination == "optimal" else None,
        "variables": r.variables,
        "constraints": r.constraints,
        "message": r.message[:500],
        "plan": plan_summary(r.plan),
        "evaluation": eval_summary(r.evaluation),
    }


def run_heuristic(scenario: Any, algorithm: str, budget: float) -> dict[str, Any]:
    o = solve(scenario, algorithm=algorithm, time_budget_s=budget, seed=0)
    return {
        "algorithm": algorithm,
        "time_budget_s": budget,
        "objective": o.objective,
        "feasible": o.evaluation.feasible,
        "termination": o.termination,
        "wall_s": o.wall_s,
        "time_to_best_s": o.time_to_best_s,
        "iterations": o.iterations,
        "starts": o.starts,
        "plan": plan_summary(o.plan),
        "evaluation": eval_summary(o.evaluation),
    }


def derive(rec: dict[str, Any]) -> None:
    """Reference value, gaps, and the infeasible-although-feasible flags."""
    milps = [m for m in rec["milp"].values() if m.get("termination") != "error"]
    proven = [
        m["objective"]
        for m in milps
        if m["termination"] == "optimal" and m["feasible"] and m["objective"] is not None
    ]
    feasible_found = any(m.get("feasible") for m in milps)
    proven_infeasible = any(m["termination"] == "infeasible" for m in milps)
    bounds = [m["bound"] for m in milps if m.get("bound") is not None]
    if proven:
        ref, kind = min(proven), "optimum"
    elif bounds:
        ref, kind = max(bounds), "bound"
    else:
        ref, kind = None, None
    rec["reference"] = {
        "value": ref,
        "kind": kind,
        "milp_feasible_plan": feasible_found,
        "milp_proved_infeasible": proven_infeasible,
    }
    # Does the budget bind at the optimum? (rental + storage within 1% of it, or
    # demand left unmet although the plan is feasible)
    best = next(
        (m for m in milps if m["termination"] == "optimal" and m["feasible"]),
        None,
    )
    if best is not None and rec["budget"] is not None:
        c = best["evaluation"]["cost"]
        spend = c["rental"] + c["storage"]
        rec["reference"]["budget_slack"] = rec["budget"] - spend
        rec["reference"]["optimum_unmet"] = best["plan"]["unmet"]
    for h in HEURISTICS:
        r = rec["heuristics"].get(h)
        if r is None:
            continue
        r["gap"] = (r["objective"] - ref) / ref if ref and ref > 0 else None
        r["gap_kind"] = kind
        r["infeasible_but_feasible_exists"] = bool(feasible_found and not r["feasible"])


def run_instance(inst: Instance, limit: float, backends: list[str]) -> dict[str, Any]:
    doc = inst.document()
    s = parse_scenario(doc)
    table = candidate_table(s)
    rec: dict[str, Any] = {
        "name": inst.name,
        "family": inst.family,
        "seed": inst.seed,
        "params": dict(inst.params),
        "expect": inst.expect,
        "types": len(s.query_types),
        "models": [m.id for m in s.models],
        "gpus": {g.id: g.available for g in s.gpus},
        "precisions": [p.id for p in s.precisions],
        "budget": s.policy.budget,
        "candidates": table.size,
        "milp": {},
        "heuristics": {},
    }
    for b in backends:
        rec["milp"][b] = run_milp(s, b, limit)
        m = rec["milp"][b]
        print(
            f"  {b:5s} {m['termination']:10s} obj={m.get('objective')} bound={m.get('bound')} "
            f"{m['wall_s']:.1f}s",
            flush=True,
        )
    for name, algo, budget in (("gh", "gh", 0.0), ("agh1", "agh", 1.0), ("agh5", "agh", 5.0)):
        rec["heuristics"][name] = run_heuristic(s, algo, budget)
        h = rec["heuristics"][name]
        print(
            f"  {name:5s} ${h['objective']:.2f} feasible={h['feasible']} {h['termination']} "
            f"wall {h['wall_s']:.2f}s best@{h['time_to_best_s']:.2f}s",
            flush=True,
        )
    derive(rec)
    return rec


# --------------------------------------------------------------------------------------
# Report


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def _med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s" if xs else "—"


def render(data: dict[str, Any], keep: str) -> str:
    meta = data["meta"]
    recs = [r for r in data["instances"] if not r.get("timing_only")]
    timing = [r for r in data["instances"] if r.get("timing_only")]
    out = [
        "# Families baseline: GH / AGH vs proven optima on instances outside the generator",
        "",
        f"* command: `{meta['command']}`",
        f"* git commit: `{meta['commit']}`; date: {meta['date']}",
        f"* machine: {meta['machine']}; solvers: {meta['solvers']}; one thread each, run one "
        f"at a time under `nice -n 10` on a 2-core machine shared with other agents "
        f"(AGH's deadline is wall-clock: a busy machine gives it fewer iterations)",
        f"* MILP time limit {meta['time_limit_s']} s per backend, relative gap 1e-6, no warm "
        "start; AGH seed 0",
        f"* instances: {len(recs)} of `benchmark_set()`"
        + (f" + {len(timing)} of `timing_set()`" if timing else "")
        + (f"; {meta['note']}" if meta.get("note") else ""),
        "",
        "Gap = (heuristic's evaluator cost − reference) / reference; the reference is the best "
        "proven optimum (CBC or HiGHS), else the best bound (gap marked ≥). *Infeasible-but-"
        "feasible*: the heuristic's plan has violations although the MILP found a feasible "
        "plan. Gap statistics cover the instances with a proven optimum, all plans (feasible "
        "or not, at the evaluator's cost); the feasible-only figures follow in brackets.",
        "",
        "## Per family",
        "",
        "| family | n | proven | GH mean / worst | AGH 1 s mean / worst | AGH 5 s mean / worst "
        "| infeasible-but-feasible GH / AGH1 / AGH5 | AGH 5 s stopped by patience, median "
        "wall | CBC proved, median to proof | HiGHS proved, median to proof |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def variant(r: dict[str, Any]) -> str:
        flags = [k for k in ("budget", "short") if r["params"].get(k)]
        return r["family"] + "".join(f" +{k}" for k in flags)

    fams = list(dict.fromkeys(variant(r) for r in recs))

    def stats(rs: list[dict[str, Any]], h: str) -> str:
        gaps = [r["heuristics"][h]["gap"] for r in rs if r["reference"]["kind"] == "optimum"]
        gaps = [g for g in gaps if g is not None]
        feas = [
            r["heuristics"][h]["gap"]
            for r in rs
            if r["reference"]["kind"] == "optimum" and r["heuristics"][h]["feasible"]
        ]
        if not gaps:
            return "—"
        s = f"{_pct(statistics.mean(gaps))} / {_pct(max(gaps))}"
        if len(feas) != len(gaps):
            s += (
                f" [{_pct(statistics.mean(feas))} / {_pct(max(feas))}, {len(feas)} feas.]"
                if feas
                else " [no feasible plan]"
            )
        return s

    def proof(rs: list[dict[str, Any]], b: str) -> str:
        t = [
            r["milp"][b]["time_to_proof_s"]
            for r in rs
            if b in r["milp"] and r["milp"][b].get("time_to_proof_s") is not None
        ]
        inf = sum(1 for r in rs if r["milp"].get(b, {}).get("termination") == "infeasible")
        n = sum(1 for r in rs if b in r["milp"])
        s = f"{len(t)}/{n}, {_med(t)}"
        if inf:
            s += f" (+{inf} proved infeasible)"
        return s

    groups = [(f, [r for r in recs if variant(r) == f]) for f in fams] + [("**all**", recs)]
    for f, rs in groups:
        proven = sum(1 for r in rs if r["reference"]["kind"] == "optimum")
        ibf = " / ".join(
            str(sum(r["heuristics"][h]["infeasible_but_feasible_exists"] for r in rs))
            for h in HEURISTICS
        )
        conv = [r["heuristics"]["agh5"] for r in rs]
        early = sum(h["termination"] == "converged" for h in conv)
        wall = statistics.median(h["wall_s"] for h in conv)
        out.append(
            f"| {f} | {len(rs)} | {proven} | {stats(rs, 'gh')} | {stats(rs, 'agh1')} | "
            f"{stats(rs, 'agh5')} | {ibf} | {early}/{len(rs)}, {wall:.2f} s | "
            f"{proof(rs, 'cbc')} | {proof(rs, 'highs')} |"
        )
    same = sum(
        abs(r["heuristics"]["agh1"]["objective"] - r["heuristics"]["agh5"]["objective"]) < 1e-6
        for r in recs
    )
    nob = [r for r in recs if r["budget"] is None and not r["reference"]["milp_proved_infeasible"]]
    out += [
        "",
        f"* AGH with 5 s returns the same cost as with 1 s on {same}/{len(recs)} instances.",
        f"* Without a budget ({len(nob)} instances): GH {stats(nob, 'gh')}, AGH 1 s "
        f"{stats(nob, 'agh1')}, AGH 5 s {stats(nob, 'agh5')}.",
    ]
    out += [
        "",
        "## Per instance",
        "",
        "Costs are $ per hour (evaluator). ✗ = the plan violates a constraint (the kinds "
        "follow). AGH end: `deadline` or `converged` (patience), with wall time and time to "
        "its best plan.",
        "",
        "| instance | types | D | expect | CBC | HiGHS | reference | GH | AGH 1 s | AGH 5 s "
        "| AGH 1 s end | AGH 5 s end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def milp_cell(m: dict[str, Any] | None) -> str:
        if m is None:
            return "—"
        if m["termination"] == "optimal":
            return f"opt ${_num(m['objective'])} in {m['wall_s']:.1f} s"
        if m["termination"] == "infeasible":
            return f"infeasible in {m['wall_s']:.1f} s"
        if m["termination"] == "time_limit":
            inc = f"${_num(m['objective'])}" if m.get("objective") is not None else "no plan"
            return f"limit: {inc}, bound {_num(m.get('bound'))}"
        return m["termination"]

    def h_cell(h: dict[str, Any]) -> str:
        s = f"${h['objective']:.2f}"
        if h.get("gap") is not None:
            s += f" ({'≥' if h['gap_kind'] == 'bound' else '+'}{_pct(h['gap'])})"
        if not h["feasible"]:
            kinds = sorted({v["constraint"] for v in h["evaluation"]["violations"]})
            s += " ✗ " + ",".join(kinds)
        return s

    def end_cell(h: dict[str, Any]) -> str:
        return f"{h['termination']} {h['wall_s']:.2f} s (best {h['time_to_best_s']:.2f} s)"

    for r in recs + timing:
        ref = r["reference"]
        ref_s = (
            f"${_num(ref['value'])}"
            if ref["kind"] == "optimum"
            else (f"≥ ${_num(ref['value'])} (bound)" if ref["kind"] == "bound" else "—")
        )
        if ref["milp_proved_infeasible"]:
            ref_s = "infeasible"
        if ref.get("budget_slack") is not None:
            ref_s += f"; budget slack ${ref['budget_slack']:.2f}"
        hs = r["heuristics"]
        out.append(
            f"| {r['name']}{' (timing)' if r.get('timing_only') else ''} | {r['types']} | "
            f"{r['candidates']} | {r['expect'] or '?'} | {milp_cell(r['milp'].get('cbc'))} | "
            f"{milp_cell(r['milp'].get('highs'))} | {ref_s} | {h_cell(hs['gh'])} | "
            f"{h_cell(hs['agh1'])} | {h_cell(hs['agh5'])} | {end_cell(hs['agh1'])} | "
            f"{end_cell(hs['agh5'])} |"
        )
    honest = [r for r in recs if r["reference"]["milp_proved_infeasible"]]
    if honest:
        out += ["", "Provably infeasible instances (a planner must report the unmet demand):", ""]
        for r in honest:
            for h in HEURISTICS:
                p = r["heuristics"][h]
                unmet = p["plan"]["unmet"]
                out.append(
                    f"* {r['name']} {h}: feasible={p['feasible']}, unmet reported on "
                    f"{len(unmet)}/{r['types']} types (total fraction "
                    f"{sum(unmet.values()):.2f}), violations: "
                    + ", ".join(sorted({v["constraint"] for v in p["evaluation"]["violations"]}))
                )
    text = "\n".join(out) + "\n"
    if keep:
        text += "\n" + keep
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=120.0, help="per MILP backend, s")
    ap.add_argument("--backends", default="cbc,highs")
    ap.add_argument("--only", default="", help="comma-separated substrings of instance names")
    ap.add_argument("--timing", action="store_true", help="also run timing_set() (scale)")
    ap.add_argument("--timing-limit", type=float, default=60.0, help="MILP limit on scale, s")
    ap.add_argument("--json", type=Path, default=RESULTS / "families_baseline.json")
    ap.add_argument("--md", type=Path, default=RESULTS / "families_baseline.md")
    ap.add_argument("--report", action="store_true", help="only regenerate the markdown")
    ap.add_argument("--note", default="", help="a remark for the report header")
    args = ap.parse_args()

    if not args.report:
        backends = [b for b in args.backends.split(",") if b]
        only = [o for o in args.only.split(",") if o]
        insts = [(i, False) for i in benchmark_set()]
        if args.timing:
            insts += [(i, True) for i in timing_set()]
        if only:
            insts = [(i, t) for i, t in insts if any(o in i.name for o in only)]

        data: dict[str, Any] = {
            "meta": {
                "command": "nice -n 10 python3 bench/families_baseline.py "
                + " ".join(sys.argv[1:]),
                "commit": git_rev(),
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine(),
                "solvers": f"CBC {cbc_version()}, HiGHS (highspy) {highs_version()}",
                "time_limit_s": args.time_limit,
                "timing_limit_s": args.timing_limit,
                "note": args.note,
                "complete": False,
            },
            "instances": [],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        for inst, timing_only in insts:
            print(f"{inst.name}", flush=True)
            rec = run_instance(
                inst, args.timing_limit if timing_only else args.time_limit, backends
            )
            rec["timing_only"] = timing_only
            data["instances"].append(rec)
            args.json.write_text(json.dumps(data, indent=1))
        data["meta"]["complete"] = True
        args.json.write_text(json.dumps(data, indent=1))
    data = json.loads(args.json.read_text())
    keep = ""
    if args.md.exists():
        old = args.md.read_text()
        if DIAGNOSIS_MARK in old:
            keep = old[old.index(DIAGNOSIS_MARK) :]
    args.md.write_text(render(data, keep))
    print(f"wrote {args.json} and {args.md}")


if __name__ == "__main__":
    main()
