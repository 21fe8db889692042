"""The paper's comparison on our instance families: exact MILP (Pyomo + CBC) vs GH and
AGH, the ablations, and the v2 baselines (LPR, DVR, HF).

    python bench/compare.py --quick                  # smoke run: two small sizes, 30 s MILP limit
    python bench/compare.py                          # full: four sizes, 600 s MILP limit
    python bench/compare.py --time-limit 120 --sizes 20,20,20

Per instance: MILP termination / evaluator cost / proven bound / gap / wall time; GH
and AGH cost and time; AGH's gap to the MILP bound ((AGH − bound) / AGH); AGH vs the
MILP optimum where CBC proved one; speed-up = MILP wall time to its final answer /
AGH time to its final plan. Every plan's cost is the evaluator's. CBC runs with one
thread so the two cores are not shared between solver threads and the timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.plan.candidates import candidate_table
from app.engine.plan.evaluate import evaluate_plan
from app.engine.solvers.agh import agh
from app.engine.solvers.greedy import Mechanisms, greedy
from app.engine.solvers.milp.audit import solve_milp
from app.engine.solvers.milp.backends.cbc import cbc_version
from app.research.baselines import BASELINES, run_baseline
from app.research.instances import generate

SIZES = [(6, 6, 10), (10, 10, 10), (20, 20, 20), (50, 30, 24)]
ABLATIONS = {
    "full": Mechanisms(),
    "no M1": Mechanisms(m1=False),
    "no M2": Mechanisms(m2=False),
    "no M3": Mechanisms(m3=False),
}


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--time-limit", type=float, default=None, help="MILP limit, s (600)")
    ap.add_argument("--agh-budget", type=float, default=5.0, help="AGH time budget, s")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--variants", default="loose,tight_availability")
    ap.add_argument("--sizes", default=None, help="e.g. 6,6,10;20,20,20")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument(
        "--baseline-limit",
        type=float,
        default=30.0,
        help="time limit of each baseline's LP/MILP steps, s",
    )
    args = ap.parse_args()
    limit = args.time_limit or (30.0 if args.quick else 600.0)
    sizes = SIZES[:2] if args.quick else SIZES
    if args.sizes:
        sizes = [tuple(int(v) for v in part.split(",")) for part in args.sizes.split(";")]
    seeds = range(1 if args.quick else args.seeds)
    variants = args.variants.split(",")

    print(f"# command: python bench/compare.py {' '.join(sys.argv[1:])}")
    print(
        f"# machine: {platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}; {cbc_version()}, 1 thread, MILP limit {limit:.0f} s, "
        f"relative gap 1e-4; AGH budget {args.agh_budget} s"
    )
    print()
    print(
        "| size | variant | seed | D | MILP end | MILP $ | bound | MILP gap | MILP s | "
        "GH $ | GH s | AGH $ | AGH to best s | AGH gap to bound | AGH vs optimum | speed-up |"
    )
    print("|" + "---|" * 16)
    rows = []
    for size in sizes:
        for variant in variants:
            for seed in seeds:
                s = generate(*size, seed=seed, variant=variant)
                t0 = time.perf_counter()
                table = candidate_table(s)
                t_table = time.perf_counter() - t0
                gh_state = greedy(table)
                t_gh = time.perf_counter() - t0
                gh = evaluate_plan(s, gh_state.to_plan())
                st, stats = agh(table, time_budget_s=args.agh_budget, seed=seed)
                t_agh_best = t_table + stats.time_to_best_s
                ag = evaluate_plan(s, st.to_plan())
                milp = solve_milp(s, time_limit_s=limit, table=table, threads=1)
                bound = milp.bound
                agh_gap = (ag.cost.total - bound) / ag.cost.total if bound is not None else None
                vs_opt = (
                    (ag.cost.total - milp.objective) / milp.objective
                    if milp.termination == "optimal" and milp.objective
                    else None
                )
                speed = milp.wall_s / t_agh_best if t_agh_best > 0 else None
                rows.append(
                    {
                        "size": size,
                        "variant": variant,
                        "seed": seed,
                        "milp": milp,
                        "agh": ag,
                        "gh": gh,
                        "agh_gap": agh_gap,
                        "vs_opt": vs_opt,
                        "speed": speed,
                        "agh_s": t_agh_best,
                        "s": s,
                        "table": table,
                    }
                )
                print(
                    f"| {size} | {variant} | {seed} | {table.size} | {milp.termination} | "
                    f"{fmt(milp.objective)} | {fmt(bound)} | {fmt(milp.relative_gap, '.2%')} | "
                    f"{milp.wall_s:.1f} | {gh.cost.total:.2f}{'' if gh.feasible else ' ✗'} | "
                    f"{t_gh:.3f} | {ag.cost.total:.2f}{'' if ag.feasible else ' ✗'} | "
                    f"{t_agh_best:.2f} | {fmt(agh_gap, '.2%')} | {fmt(vs_opt, '.2%')} | "
                    f"{fmt(speed, '.0f')}× |",
                    flush=True,
                )

    print()
    opt = [r for r in rows if r["vs_opt"] is not None]
    if opt:
        gaps = [r["vs_opt"] for r in opt]
        print(
            f"AGH vs proven optimum on {len(opt)} instances CBC solved: mean "
            f"{statistics.mean(gaps):.2%}, worst {max(gaps):.2%}, median "
            f"{statistics.median(gaps):.2%}"
        )
    limited = [r for r in rows if r["milp"].termination != "optimal"]
    for r in limited:
        m = r["milp"]
        inc = "no incumbent" if m.objective is None else f"incumbent ${m.objective:.2f}"
        print(
            f"- {r['size']} {r['variant']} seed {r['seed']}: MILP {m.termination} after "
            f"{m.wall_s:.0f} s ({inc}, bound {fmt(m.bound)}); AGH ${r['agh'].cost.total:.2f} "
            f"{'≤' if m.objective is None or r['agh'].cost.total <= m.objective + 1e-9 else '>'}"
            f" incumbent; speed-up {fmt(r['speed'], '.0f')}×"
        )
    print()

    print("Ablations (AGH, same budget; ✗ = infeasible by the evaluator):")
    print()
    print("| size | variant | seed | full | no M1 | no M2 | no M3 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["size"] == SIZES[-1] and not args.quick:
            continue  # the largest size adds time, not insight
        cells = []
        for mech in ABLATIONS.values():
            st, _ = agh(
                r["table"], time_budget_s=min(args.agh_budget, 2.0), seed=r["seed"], mech=mech
            )
            ev = evaluate_plan(r["s"], st.to_plan())
            cells.append(f"${ev.cost.total:.2f}{'' if ev.feasible else ' ✗'}")
        print(
            f"| {r['size']} | {r['variant']} | {r['seed']} | " + " | ".join(cells) + " |",
            flush=True,
        )
    print()

    if args.no_baselines:
        return
    print(
        "Baselines (LPR = LP relaxation + rounding, DVR = decoupled provisioning then "
        "routing, HF = homogeneous fleet); AGH for reference:"
    )
    print()
    print("| size | variant | seed | AGH | LPR | DVR | HF |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = []
        for name in BASELINES:
            b = run_baseline(name, r["s"], time_limit_s=args.baseline_limit, table=r["table"])
            cells.append(
                "—"
                if b.objective is None
                else f"${b.objective:.2f}{'' if b.feasible else ' ✗'} ({b.wall_s:.1f} s)"
            )
        print(
            f"| {r['size']} | {r['variant']} | {r['seed']} | ${r['agh'].cost.total:.2f} | "
            + " | ".join(cells)
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
