"""GH and AGH on generated instances: cost, feasibility, wall time, memory, ablations.

    python bench/heuristics.py                 # full table (about 10 minutes on 2 cores)
    python bench/heuristics.py --quick         # two small sizes, one seed

Every plan is checked by the evaluator. Times are medians over `--runs` repeats
(the machine is shared and noisy); GH time includes building the candidate table,
which every solve needs; AGH's "to best" is when its returned plan was found.
Peak memory of building the candidate table is measured in a fresh subprocess
(ru_maxrss) so the figure is the process's real peak, not a Python estimate.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.plan.candidates import candidate_table
from app.engine.plan.evaluate import evaluate_plan
from app.engine.solvers.agh import agh
from app.engine.solvers.greedy import Mechanisms, greedy
from app.research.instances import VARIANTS, generate, tp_bound_instance

SIZES = [(6, 6, 10), (10, 10, 10), (20, 20, 20), (50, 30, 24)]
ABLATIONS = {
    "full": Mechanisms(),
    "no M1": Mechanisms(m1=False),
    "no M2": Mechanisms(m2=False),
    "no M3": Mechanisms(m3=False),
}


def binding(ev) -> str:  # type: ignore[no-untyped-def]
    if ev.feasible:
        return ""
    kinds = sorted(
        {f"{v.constraint}:{v.subject}" if v.subject else v.constraint for v in ev.violations}
    )
    return ", ".join(kinds[:3]) + (" …" if len(kinds) > 3 else "")


def run_instance(size, seed, variant, runs, budget):  # type: ignore[no-untyped-def]
    s = generate(*size, seed=seed, variant=variant)
    gh_times, agh_times, ttb = [], [], []
    gh_state = agh_state = stats = None
    for _ in range(runs):
        t0 = time.perf_counter()
        table = candidate_table(s)
        gh_state = greedy(table)
        gh_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        table = candidate_table(s)
        t_table = time.perf_counter() - t0
        agh_state, stats = agh(table, time_budget_s=budget, seed=seed)
        agh_times.append(time.perf_counter() - t0)
        ttb.append(t_table + stats.time_to_best_s)  # counted from before the table build
    assert gh_state is not None and agh_state is not None and stats is not None
    ev_gh = evaluate_plan(s, gh_state.to_plan())
    ev_agh = evaluate_plan(s, agh_state.to_plan())
    return {
        "size": size,
        "seed": seed,
        "variant": variant,
        "candidates": table.size,
        "gh_cost": ev_gh.cost.total,
        "gh_feasible": ev_gh.feasible,
        "gh_s": statistics.median(gh_times),
        "gh_binding": binding(ev_gh),
        "agh_cost": ev_agh.cost.total,
        "agh_feasible": ev_agh.feasible,
        "agh_s": statistics.median(agh_times),
        "agh_ttb_s": statistics.median(ttb),
        "agh_starts": stats.starts,
        "agh_term": stats.termination,
        "agh_binding": binding(ev_agh),
    }


def run_ablation(size, seed, variant, budget):  # type: ignore[no-untyped-def]
    s = generate(*size, seed=seed, variant=variant)
    table = candidate_table(s)
    out = {}
    for name, mech in ABLATIONS.items():
        st, _ = agh(table, time_budget_s=budget, seed=seed, mech=mech)
        ev = evaluate_plan(s, st.to_plan())
        gh_ev = evaluate_plan(s, greedy(table, mech=mech).to_plan())
        out[name] = (ev.feasible, ev.cost.total, gh_ev.feasible, gh_ev.cost.total, binding(ev))
    return out


MEM_SNIPPET = """
import resource, sys, json, tracemalloc
sys.path.insert(0, {root!r})
from app.research.instances import generate
from app.engine.plan.candidates import candidate_table
s = generate(50, 30, 24, seed=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
t = candidate_table(s)
_, traced_peak = tracemalloc.get_traced_memory()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"before_mb": before / 1024, "peak_mb": after / 1024,
                  "traced_peak_mb": traced_peak / 2**20, "candidates": t.size}}))
"""


def table_memory() -> dict[str, float]:
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", MEM_SNIPPET.format(root=root)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3, help="repeats per instance for the median")
    ap.add_argument("--budget", type=float, default=5.0, help="AGH time budget, s")
    args = ap.parse_args()
    sizes = SIZES[:2] if args.quick else SIZES
    seeds = range(1 if args.quick else args.seeds)
    runs = 1 if args.quick else args.runs
    print(f"# command: python bench/heuristics.py {' '.join(sys.argv[1:])}")
    print(
        f"# machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, cpus={__import__('os').cpu_count()}"
    )
    print()
    print(
        "| size (I,J,T) | variant | seed | D | GH $ | GH ok | GH s | AGH $ | AGH ok | "
        "AGH s | AGH to best s | starts | end | AGH ≤ GH | binding (if infeasible) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size in sizes:
        for variant in VARIANTS:
            for seed in seeds:
                r = run_instance(size, seed, variant, runs, args.budget)
                rows.append(r)
                ok = not r["gh_feasible"] or (
                    r["agh_feasible"] and r["agh_cost"] <= r["gh_cost"] + 1e-9
                )
                print(
                    f"| {size} | {variant} | {seed} | {r['candidates']} | {r['gh_cost']:.2f} | "
                    f"{'yes' if r['gh_feasible'] else 'NO'} | {r['gh_s']:.3f} | "
                    f"{r['agh_cost']:.2f} | {'yes' if r['agh_feasible'] else 'NO'} | "
                    f"{r['agh_s']:.2f} | {r['agh_ttb_s']:.2f} | {r['agh_starts']} | "
                    f"{r['agh_term']} | {'yes' if ok else 'NO'} | "
                    f"{r['agh_binding'] or r['gh_binding']} |",
                    flush=True,
                )
    print()
    print("Per size (medians over instances):")
    print()
    print(
        "| size | GH s | AGH to best s | AGH s | GH feasible | AGH feasible "
        "| mean AGH saving vs GH |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        rs = [r for r in rows if r["size"] == size]
        both = [r for r in rs if r["gh_feasible"] and r["agh_feasible"]]
        saving = (
            statistics.mean(1 - r["agh_cost"] / r["gh_cost"] for r in both) * 100
            if both
            else float("nan")
        )
        print(
            f"| {size} | {statistics.median(r['gh_s'] for r in rs):.3f} | "
            f"{statistics.median(r['agh_ttb_s'] for r in rs):.2f} | "
            f"{statistics.median(r['agh_s'] for r in rs):.2f} | "
            f"{sum(r['gh_feasible'] for r in rs)}/{len(rs)} | "
            f"{sum(r['agh_feasible'] for r in rs)}/{len(rs)} | {saving:.1f}% |"
        )
    print()
    print("Ablations (AGH with a mechanism off; GH with the same mechanism off in brackets):")
    print()
    print("| size | variant | seed | full | no M1 | no M2 | no M3 |")
    print("|---|---|---|---|---|---|---|")
    abl_sizes = sizes[:3] if not args.quick else sizes
    for size in abl_sizes:
        for variant in VARIANTS:
            for seed in seeds:
                res = run_ablation(size, seed, variant, min(args.budget, 2.0))
                cells = []
                for name in ABLATIONS:
                    feas, cost, gfeas, gcost, _ = res[name]
                    cells.append(
                        f"{'' if feas else 'INFEASIBLE '}${cost:.2f} "
                        f"[GH {'' if gfeas else 'INFEASIBLE '}${gcost:.2f}]"
                    )
                print(f"| {size} | {variant} | {seed} | " + " | ".join(cells) + " |", flush=True)
    print()
    print("M3 on a TP-bound instance (app.research.instances.tp_bound_instance, hand-built):")
    print()
    s = tp_bound_instance()
    table = candidate_table(s)
    for name in ("full", "no M3"):
        mech = ABLATIONS[name]
        ev_gh = evaluate_plan(s, greedy(table, mech=mech).to_plan())
        st, _ = agh(table, time_budget_s=1.0, seed=0, mech=mech)
        ev_agh = evaluate_plan(s, st.to_plan())
        print(
            f"- {name}: GH "
            f"{'feasible' if ev_gh.feasible else 'INFEASIBLE (' + binding(ev_gh) + ')'}"
            f" ${ev_gh.cost.total:.2f}; AGH {'feasible' if ev_agh.feasible else 'INFEASIBLE'}"
            f" ${ev_agh.cost.total:.2f}"
        )
    print()
    mem = table_memory()
    print(
        f"Candidate table for (50,30,24): {mem['candidates']} candidates; allocations while "
        f"building peak at {mem['traced_peak_mb']:.0f} MB (tracemalloc, numpy included); "
        f"process peak RSS {mem['peak_mb']:.0f} MB (after imports and instance: "
        f"{mem['before_mb']:.0f} MB)"
    )


if __name__ == "__main__":
    main()
