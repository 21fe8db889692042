"""Write docs/results.md and the plots in docs/img/ from the studies' JSON.

    python3 bench/stress.py && python3 bench/rolling.py && python3 bench/report.py

Reads bench/results/stress.json and rolling.json (required), rolling_sweep.json
(optional: the sigma sweep) and compare.json (optional: AGH vs MILP by instance
size). Every figure in the report is read from those files; the paper's figures
are the ones in reference/paper-results.md. Matplotlib runs on the Agg backend.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rolling
import stress

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
IMG = DOCS / "img"

PLANNER_STYLE = {
    "AGH": {"color": "tab:blue", "marker": "o"},
    "GH": {"color": "tab:orange", "marker": "s"},
    "MILP u=0.8": {"color": "tab:green", "marker": "^"},
    "MILP u=1.0": {"color": "tab:red", "marker": "v"},
}
AXIS_TITLE = {
    "inflation": "delay & error × f",
    "demand": "demand × f",
    "combined": "delay, error & demand × f",
}
POLICY_STYLE = {
    "svc-agh": {"color": "tab:blue", "lw": 2.2},
    "svc-agh-cc0": {"color": "tab:cyan", "lw": 1.5},
    "svc-agh-max": {"color": "black", "lw": 1.8},
    "agh-mean": {"color": "tab:purple", "ls": "--"},
    "agh-peak": {"color": "tab:purple", "ls": ":"},
    "milp-mean": {"color": "tab:green", "ls": "--"},
    "milp-peak": {"color": "tab:green", "ls": ":"},
    "milp1-mean": {"color": "tab:red", "ls": "--"},
    "milp1-peak": {"color": "tab:red", "ls": ":"},
    "gh": {"color": "tab:orange", "lw": 1.2},
}
GPU_COLORS = {
    "H200-SXM": "#08306b",
    "H100-SXM": "#2171b5",
    "A100-SXM-80GB": "#6baed6",
    "L40S": "#74c476",
    "L4": "#c7e9c0",
    "RTX-4090": "#fd8d3c",
}


def merge_runs(*results: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Runs of several rolling.py outputs, merged by sigma (same seed: same demand),
    policies in rolling.POLICIES order."""
    by: dict[float, dict[str, Any]] = {}
    for res in results:
        for r in (res or {}).get("runs", []):
            m = by.setdefault(r["sigma"], {**r, "policies": {}})
            m["policies"].update(r["policies"])
    for m in by.values():
        m["policies"] = {k: m["policies"][k] for k in rolling.POLICIES if k in m["policies"]}
    return [by[s] for s in sorted(by)]


def load(name: str) -> dict[str, Any] | None:
    p = RESULTS / name
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def pct(v: float, digits: int = 1) -> str:
    return f"{100 * v:.{digits}f}%"


def save(fig: Any, name: str) -> str:
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / name, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f"img/{name}"


# ------------------------------------------------------------------------------------
# Plots


def plot_stress(st: dict[str, Any], key: str, ylabel: str, name: str, scale: float = 1.0) -> str:
    scen = list(st["scenarios"])
    fig, axes = plt.subplots(len(scen), 3, figsize=(14, 4.2 * len(scen)), squeeze=False)
    for r, sname in enumerate(scen):
        entry = st["scenarios"][sname]
        for c, axis in enumerate(stress.AXES):
            ax = axes[r][c]
            for planner, grid in entry["stress"].items():
                rows = grid[axis]
                ax.plot(
                    [x["factor"] for x in rows],
                    [scale * x[key] for x in rows],
                    label=planner,
                    **PLANNER_STYLE.get(planner, {}),
                )
            if key == "violation_share" and axis == "inflation":
                ax.axhline(4, color="grey", ls=":", lw=1)
                ax.text(1.31, 1.0, "paper: AGH < 4% at 1.5×", color="grey", fontsize=8)
            ax.set_title(f"{sname}: {AXIS_TITLE[axis]}")
            ax.set_xlabel("stress factor f")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return save(fig, name)


def plot_breakdown(st: dict[str, Any]) -> str:
    """SLO vs accuracy share of the violations at 1.5x, per plan and axis (demo)."""
    entry = st["scenarios"]["demo"]
    planners = list(entry["stress"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    for ax, axis in zip(axes, stress.AXES, strict=True):
        slo = [100 * entry["stress"][p][axis][-1]["slo_violation_share"] for p in planners]
        acc = [100 * entry["stress"][p][axis][-1]["accuracy_violation_share"] for p in planners]
        x = np.arange(len(planners))
        ax.bar(x, slo, color="tab:red", label="SLO (latency) violating")
        ax.bar(x, acc, bottom=slo, color="tab:gray", label="accuracy violating")
        ax.set_xticks(x, planners, rotation=15)
        ax.set_title(f"demo at 1.5×: {AXIS_TITLE[axis]}")
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("share of demand (%)")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return save(fig, "stress_breakdown.png")


def plot_headroom(st: dict[str, Any]) -> str:
    scen = list(st["headroom"])
    fig, axes = plt.subplots(2, len(scen), figsize=(6.5 * len(scen), 8), squeeze=False)
    for c, sname in enumerate(scen):
        sweep = st["headroom"][sname]
        for key, color in (("AGH", "tab:blue"), ("MILP", "tab:green")):
            rows = [r for r in sweep[key] if "no_plan" not in r]
            u = [r["max_utilization"] for r in rows]
            axes[0][c].plot(u, [r["planned_cost"] for r in rows], marker="o", color=color,
                            label=f"{key}: planned cost")  # fmt: skip
            for axis, ls in (("inflation", "-"), ("demand", "--"), ("combined", ":")):
                axes[1][c].plot(
                    u, [100 * r["at_1_5"][axis]["violation_share"] for r in rows],
                    marker="o", color=color, ls=ls, label=f"{key}: {AXIS_TITLE[axis]} = 1.5",
                )  # fmt: skip
        axes[0][c].set_title(f"{sname}: plan cost vs headroom")
        axes[0][c].set_ylabel("planned cost ($/h, incl. unmet penalty)")
        axes[1][c].set_title(f"{sname}: violations at 1.5× vs headroom")
        axes[1][c].set_ylabel("violating share of demand (%)")
        for ax in (axes[0][c], axes[1][c]):
            ax.set_xlabel("max_utilization (planned headroom = 1 − u)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, "headroom.png")


def plot_rolling_cost(run: dict[str, Any]) -> str:
    pols = run["policies"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 10), sharex=True)
    finals = []
    for name, p in pols.items():
        cost = np.asarray(p["per_minute"]["cost"])
        hours = len(cost) // 60
        hourly = cost[: hours * 60].reshape(hours, 60).sum(axis=1)
        style = POLICY_STYLE.get(name, {})
        ax1.plot(np.arange(hours) + 0.5, hourly, label=p["label"], **style)
        cum = np.cumsum(cost)
        ax2.plot(np.arange(len(cost)) / 60, cum, **style)
        finals.append((name, cum[-1]))
    ax1.set_yscale("log")
    ax1.set_ylabel("cost in each hour of the day ($, log scale)")
    ax1.set_title(f"Cost over the simulated day (σ = {run['sigma']}): rental + penalties")
    # linear cumulative, clipped so the re-planning policies stay readable
    keep = [c for n, c in finals if n.startswith(("svc", "gh")) or n.endswith("peak")]
    top = 1.3 * max(keep) if keep else None
    if top:
        ax2.set_ylim(0, top)
        off = [n for n, c in finals if c > top]
        if off:
            ax2.text(0.3, 0.93 * top, "off scale (see table): " + ", ".join(off), fontsize=8)
    ax2.set_ylabel("cumulative cost ($)")
    ax2.set_xlabel("hour of day")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, which="both")
        ax.set_xlim(0, 24)
        ax.set_xticks(range(0, 25, 3))
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return save(fig, "rolling_cost.png")


def plot_rolling_gpus(run: dict[str, Any]) -> str:
    pols = run["policies"]
    main = pols["svc-agh"]
    steps = main["gpus_by_type_per_step"]
    step_min = 5
    t = np.arange(len(steps)) * step_min / 60
    types = sorted({g for s in steps for g in s}, key=lambda g: list(GPU_COLORS).index(g)
                   if g in GPU_COLORS else 99)  # fmt: skip
    ys = [[s.get(g, 0) for s in steps] for g in types]
    fig, ax = plt.subplots(figsize=(12, 5))
    ax.stackplot(t, ys, labels=types, colors=[GPU_COLORS.get(g) for g in types],
                 step="post", alpha=0.9)  # fmt: skip
    for name, ls in (("svc-agh-cc0", "-"), ("agh-peak", ":"), ("agh-mean", "--")):
        if name in pols:
            tot = [sum(s.values()) for s in pols[name]["gpus_by_type_per_step"]]
            ax.step(t, tot, where="post", color="black", ls=ls, lw=1.2,
                    label=f"total GPUs: {pols[name]['label']}")  # fmt: skip
    ax.set_xlabel("hour of day")
    ax.set_ylabel("GPUs in the plan")
    ax.set_title("GPUs by type over the day — service AGH re-planning every 5 min "
                 "(change cost $0.5/GPU)")  # fmt: skip
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    demand = np.sum([np.asarray(v) for v in run["demand"].values()], axis=0)
    ax2.plot(np.arange(len(demand)) / 60, demand, color="tab:red", lw=0.6, alpha=0.7,
             label="total demand (req/s, right axis)")  # fmt: skip
    ax2.set_ylabel("total demand (requests/s)")
    ax2.set_ylim(0, demand.max() * 1.6)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    return save(fig, "rolling_gpus.png")


def plot_demand(run: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for q, v in run["demand"].items():
        ax.plot(np.arange(len(v)) / 60, v, lw=0.7, label=q)
    ax.set_xlabel("hour of day")
    ax.set_ylabel("arrival rate (requests/s)")
    ax.set_title(f"Synthetic 24 h demand per query type (σ = {run['sigma']}, seed 0)")
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    return save(fig, "rolling_demand.png")


def plot_sigma(runs: list[dict[str, Any]]) -> str:
    names = [n for n in runs[0]["policies"] if all(n in r["policies"] for r in runs)]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    w = 0.8 / len(runs)
    x = np.arange(len(names))
    for k, r in enumerate(runs):
        ax.bar(x + k * w, [r["policies"][n]["total_cost"] for n in names], w,
               label=f"σ = {r['sigma']}")  # fmt: skip
    ax.set_xticks(x + w * (len(runs) - 1) / 2, names)
    ax.set_yscale("log")
    ax.set_ylabel("total cost over the day ($, log scale)")
    ax.set_title("Day cost per policy vs demand volatility σ")
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend()
    fig.tight_layout()
    return save(fig, "rolling_sigma.png")


def compare_rows(cmp: Any) -> list[dict[str, Any]]:
    """Best-effort reading of compare.json: rows with a size and AGH's gap to the
    MILP (vs the optimum, or else vs the proven bound)."""
    rows = cmp.get("rows", cmp.get("instances", [])) if isinstance(cmp, dict) else cmp
    out = []
    for r in rows if isinstance(rows, list) else []:
        if not isinstance(r, dict) or "size" not in r:
            continue
        gap = None
        for k in ("agh_vs_optimum", "vs_opt", "agh_vs_opt"):
            if isinstance(r.get(k), int | float):
                gap = float(r[k])
                break
        bound_gap = None
        for k in ("agh_gap_to_bound", "agh_gap"):
            if isinstance(r.get(k), int | float):
                bound_gap = float(r[k])
                break
        if gap is None and bound_gap is None:
            continue
        size = r["size"]
        label = "(" + ", ".join(str(v) for v in size) + ")" if isinstance(size, list) else str(size)
        out.append({"size": label, "variant": r.get("variant", ""), "gap": gap,
                    "bound_gap": bound_gap})  # fmt: skip
    return out


def plot_gap(rows: list[dict[str, Any]]) -> str:
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for variant in sorted({r["variant"] for r in rows}):
        for key, marker, what in (("gap", "o", "vs optimum"), ("bound_gap", "x", "vs bound")):
            pts = [(sizes.index(r["size"]), 100 * r[key]) for r in rows
                   if r["variant"] == variant and r[key] is not None]  # fmt: skip
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.scatter(xs, ys, marker=marker, label=f"{variant or 'all'}: AGH {what}")
    ax.axhspan(5, 10, color="grey", alpha=0.15, label="paper: AGH 5–10% above optimum")
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set_xlabel("instance size (types, models, tiers)")
    ax.set_ylabel("AGH cost above MILP (%)")
    ax.set_title("AGH vs exact MILP by instance size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, "gap_by_size.png")


# ------------------------------------------------------------------------------------
# The report


def paper_table(st: dict[str, Any], run: dict[str, Any]) -> list[str]:
    d, c = st["scenarios"]["demo"], st["scenarios"]["critical"]

    def s15(entry: dict[str, Any], p: str, axis: str = "inflation") -> dict[str, float]:
        return dict(entry["stress"][p][axis][-1])

    def s10(entry: dict[str, Any], p: str) -> dict[str, float]:
        return dict(entry["stress"][p]["inflation"][0])

    pols = run["policies"]

    def save_vs(other: str) -> str:
        if other not in pols:
            return "not run"
        a, o = pols["svc-agh"]["total_cost"], pols[other]["total_cost"]
        return f"{100 * (a / o - 1):+.1f}%"

    agh15, milp15, milp1_15 = s15(d, "AGH"), s15(d, "MILP u=0.8"), s15(d, "MILP u=1.0")
    aghq, milp1q = s15(d, "AGH", "demand"), s15(d, "MILP u=1.0", "demand")
    lines = [
        "| finding | paper | ours (this run) |",
        "|---|---|---|",
        f"| AGH plan under 1.5× delay+error inflation | $434–474, < 4% violations "
        f"| ${s10(d, 'AGH')['realised_cost']:.2f}/h → ${agh15['realised_cost']:.0f}/h, "
        f"{pct(agh15['violation_share'])} violating ({pct(agh15['slo_violation_share'])} "
        f"latency + {pct(agh15['accuracy_violation_share'])} accuracy) |",
        f"| AGH plan under 1.5× demand | — | ${aghq['realised_cost']:.0f}/h, "
        f"{pct(aghq['violation_share'])} violating |",
        f"| cost-minimal MILP (no headroom, u = 1.0) under 1.5× inflation | $793 → $909, "
        f"14%+ violations | ${s10(d, 'MILP u=1.0')['realised_cost']:.2f}/h → "
        f"${milp1_15['realised_cost']:.0f}/h, {pct(milp1_15['violation_share'])} "
        f"({pct(milp1q['violation_share'])} under 1.5× demand) |",
        f"| MILP at AGH's headroom (u = 0.8) under 1.5× inflation | (not in the paper) "
        f"| ${s10(d, 'MILP u=0.8')['realised_cost']:.2f}/h → ${milp15['realised_cost']:.0f}/h, "
        f"{pct(milp15['violation_share'])} |",
        f"| GH under 1.5× inflation | $475–498 | ${s15(d, 'GH')['realised_cost']:.0f}/h, "
        f"{pct(s15(d, 'GH')['violation_share'])} |",
    ]
    cp = c["plans"]
    lines.append(
        f"| critical budget: GH / AGH plan cost | GH $1,162 (14.2% SLO viol.), AGH $343 (3.7%) "
        f"| GH ${cp['GH']['planned_cost']['total']:.0f}"
        f"{'' if cp['GH']['feasible'] else ' (infeasible: unmet cap)'}, "
        f"AGH ${cp['AGH']['planned_cost']['total']:.0f}, MILP (u=0.8) "
        f"${cp['MILP u=0.8']['planned_cost']['total']:.0f} "
        f"({cp['MILP u=0.8']['termination']}); at f = 1 none violates its SLOs |"
    )
    lines += [
        f"| re-plan /5 min vs AGH fixed 24 h (σ = {run['sigma']}) | −17.3% (σ 0.04), "
        f"−16.0% (σ 0.05) | vs fixed for the mean: {save_vs('agh-mean')}; "
        f"vs fixed for the peak hour: {save_vs('agh-peak')} |",
        f"| re-plan /5 min vs MILP fixed 24 h | −45.2% / −47.9% | u=0.8 mean "
        f"{save_vs('milp-mean')}, peak {save_vs('milp-peak')}; cost-minimal u=1.0 mean "
        f"{save_vs('milp1-mean')}, peak {save_vs('milp1-peak')} |",
        f"| GH re-planning | gains nothing | GH re-plan ${pols['gh']['total_cost']:.0f}/day vs "
        f"service AGH ${pols['svc-agh']['total_cost']:.0f}/day |"
        if "gh" in pols
        else "| GH re-planning | gains nothing | not run |",
    ]
    if all(k in pols for k in ("svc-agh-max", "agh-peak", "milp-peak")):
        m = pols["svc-agh-max"]["total_cost"]
        lines.append(
            "| (a') re-plan /5 min posting the 5-min max rate, vs AGH / MILP fixed for the "
            f"peak hour | — | {100 * (m / pols['agh-peak']['total_cost'] - 1):+.1f}% / "
            f"{100 * (m / pols['milp-peak']['total_cost'] - 1):+.1f}% |"
        )
    lines += [
        "",
        "Cost changes are (re-planning − fixed) / fixed over the day: negative means "
        "re-planning is cheaper. Totals are rental + penalties; reloads are not included "
        "(the tables give them separately).",
    ]
    return lines


def onset(rows: list[dict[str, float]], key: str, level: float = 0.005) -> str:
    """The first stress factor at which `key` exceeds `level`."""
    for r in rows:
        if r[key] > level:
            return f"{r['factor']:.1f}×"
    return "beyond 1.5×"


def rel(a: float, b: float) -> str:
    """a relative to b, in words."""
    d = a / b - 1
    return f"{100 * -d:.1f}% cheaper" if d < 0 else f"{100 * d:.1f}% more expensive"


def discussion(st: dict[str, Any], run: dict[str, Any]) -> list[str]:
    d = st["scenarios"]["demo"]
    agh_rows = d["stress"]["AGH"]["inflation"]
    agh, m8, m1 = (d["stress"][p]["inflation"][-1] for p in ("AGH", "MILP u=0.8", "MILP u=1.0"))
    hs = {r["max_utilization"]: r for r in st["headroom"]["demo"]["AGH"] if "no_plan" not in r}
    pols = run["policies"]
    diff_pp = abs(100 * (m8["violation_share"] - agh["violation_share"]))
    cp = st["scenarios"]["critical"]["plans"]
    above = cp["AGH"]["planned_cost"]["total"] / cp["MILP u=0.8"]["planned_cost"]["total"] - 1
    out = ["### Stress: what we see and why", ""]
    verdict = (
        "**The paper's < 4% is not reproduced.**"
        if agh["violation_share"] >= 0.04
        else "**The paper's < 4% is reproduced.**"
    )
    out.append(
        f"* {verdict} Under our evaluator's stress semantics the AGH plan has "
        f"{pct(agh['violation_share'])} of demand violating at 1.5× delay and error "
        f"inflation. Two separate mechanisms: (1) latency — with every latency × f the "
        f"largest SLO-feasible batch B* of a pair shrinks, or vanishes (then all its traffic "
        f"misses the SLO); the 20% headroom (u = 0.8) absorbs only a 1/0.8 = 1.25× loss of "
        f"throughput, so SLO violations start at {onset(agh_rows, 'slo_violation_share')} "
        f"({pct(agh['slo_violation_share'])} at 1.5×); (2) accuracy — a cost-minimal plan "
        f"spends its error budget (the accuracy constraint binds), so it exceeds the bound "
        f"as soon as errors are inflated: {pct(agh['accuracy_violation_share'])} of demand "
        f"is answered wrongly beyond the bound at 1.5× (onset "
        f"{onset(agh_rows, 'accuracy_violation_share')}). Headroom cannot help with (2); "
        f"only planning with an error margin can. The paper does not say how it counts "
        f"violations; if it counts latency only and its plans carried more slack, < 4% is "
        f"plausible — see the headroom sweep."
    )
    same = diff_pp < 5
    out.append(
        f"* **{'Same headroom, same robustness' if same else 'Headroom and algorithm'}.** "
        f"At equal headroom the exact MILP plan (u = 0.8) and AGH differ by {diff_pp:.1f} "
        f"points at 1.5× ({pct(m8['violation_share'])} vs {pct(agh['violation_share'])})"
        + (
            ": robustness comes from the headroom policy, not from the algorithm. "
            if same
            else ". "
        )
        + f"The paper's MILP is cost-minimal with no headroom; ours at u = 1.0 degrades "
        f"much more sharply ({pct(m1['violation_share'])} at 1.5×, already "
        f"{pct(d['stress']['MILP u=1.0']['inflation'][1]['violation_share'])} at 1.1×) — the "
        f'paper\'s direction ("the cost-minimal MILP degrades sharply"), and the reason is '
        f"the missing headroom: any plan packed to 100% has no slack for a slower world."
    )
    ok = [
        u for u, r in sorted(hs.items()) if r["at_1_5"]["inflation"]["slo_violation_share"] < 0.04
    ]
    if 0.6 in hs and 0.8 in hs:
        h06 = hs[0.6]
        out.append(
            f"* **Headroom is the lever.** Re-planned at u = 0.6, AGH costs "
            f"${h06['planned_cost']:.2f}/h (vs ${hs[0.8]['planned_cost']:.2f} at 0.8, "
            f"+{100 * (h06['planned_cost'] / hs[0.8]['planned_cost'] - 1):.0f}%) and violates "
            f"{pct(h06['at_1_5']['inflation']['violation_share'])} at 1.5× inflation (latency "
            f"{pct(h06['at_1_5']['inflation']['slo_violation_share'])}, the rest accuracy) "
            f"and {pct(h06['at_1_5']['demand']['violation_share'])} at 1.5× demand. "
            + (f"Latency violations stay < 4% at 1.5× only for u ≤ {max(ok)}; "
               if ok else "No swept headroom keeps latency violations < 4% at 1.5×; ")
            + "1/1.5 = 0.67 is the bound from demand alone, the B* loss under slower "
            "latency needs more."
        )  # fmt: skip
    crit = st["meta"]["critical"]
    opt = cp["MILP u=0.8"]["termination"] == "optimal"
    out.append(
        f"* **Critical budget.** Budget = {crit['budget_share_of_agh_rental']} × the AGH "
        f"plan's rental on the demo = ${crit['budget']:.2f}/h, max_unmet_fraction ≥ "
        f"{crit['max_unmet_fraction_at_least']}. AGH plans "
        f"${cp['AGH']['planned_cost']['total']:.0f}/h (mostly penalties for demand left "
        f"unmet), the MILP at the same headroom ${cp['MILP u=0.8']['planned_cost']['total']:.0f}"
        f"/h ({cp['MILP u=0.8']['termination']}), GH ${cp['GH']['planned_cost']['total']:.0f}/h"
        f"{'' if cp['GH']['feasible'] else ' and breaks an unmet cap (infeasible)'}. "
        + (
            f"AGH is {100 * above:.0f}% above the {'optimum' if opt else 'MILP incumbent'}: "
            f"under a binding budget it leaves more demand unmet than needed — a heuristic "
            f"quality gap, not a stress effect. "
            if above > 0.02
            else "AGH matches the MILP here. "
        )
        + f"The no-headroom MILP (${cp['MILP u=1.0']['planned_cost']['total']:.2f}/h) fits "
        f"the budget outright, so this budget is only critical *given* 20% headroom. Under "
        f"stress the critical plans violate less than the demo's in share terms only because "
        f"planned-unmet demand is not counted as violating (it is penalised as unmet)."
    )
    out += ["", "### Rolling re-planning: what we see and why", ""]
    a = pols["svc-agh"]
    out.append(
        f"* The service's AGH re-planning (a) spends ${a['total_cost']:.0f} over the day "
        f"(rental ${a['rental']:.0f}, penalties ${a['penalties']:.0f}, "
        f"{pct(a['violation_share'], 2)} of requests violating, {a['mean_gpus']:.1f} GPUs on "
        f"average, churn {a['churn_gpus']} GPUs = ${a['reconfiguration_cost']:.0f} of reloads "
        f"at $0.5/GPU, not included in the total)."
    )
    for name in ("agh-mean", "agh-peak", "milp-peak"):
        if name in pols:
            b = pols[name]
            out.append(
                f"* vs {b['label']}: ${b['total_cost']:.0f} (rental ${b['rental']:.0f}, "
                f"penalties ${b['penalties']:.0f}, {pct(b['violation_share'], 2)} violating, "
                f"{b['mean_gpus']:.0f} GPUs): re-planning is "
                f"{rel(a['total_cost'], b['total_cost'])}."
            )
    out.append(
        "* Why: a plan for the mean demand is cheap in rental but pays penalties all "
        "afternoon (code peaks at about 1.8× its daily mean); a plan for the peak hour pays "
        "peak rental all night but has slack for every burst. Re-planning harvests the "
        "diurnal swing in rental (its rental is the lowest of all policies that serve the "
        "peak) but, posting the *mean* of the last 5 minutes and keeping only 20% headroom, "
        "it is exposed to the minute-level bursts of the code trace (minute CV about 0.3 "
        "around the envelope even after superposing 11 endpoints). Each violating request "
        "costs its $0.01 unmet penalty, about 200× the rental cost of serving a request, so "
        "a 0.5% violation share costs as much as the whole day's rental."
    )
    nb = run.get("no_bursts")
    if nb and "gh" in pols:
        g0, g1 = pols["gh"], nb["gh"]
        out.append(
            f"* Measured: without the trace-derived bursts (envelope and σ noise only) GH "
            f"re-planning's penalties drop from ${g0['penalties']:.0f} to "
            f"${g1['penalties']:.0f} (total ${g0['total_cost']:.0f} → ${g1['total_cost']:.0f}),"
            f" and re-planning is {rel(g1['total_cost'], nb['agh-peak']['total_cost'])} than "
            f"the AGH peak-hour plan (${nb['agh-peak']['total_cost']:.0f}) on that day."
        )
    if "svc-agh-max" in pols:
        m = pols["svc-agh-max"]
        best_static = min(
            (pols[k] for k in ("agh-peak", "milp-peak") if k in pols),
            key=lambda p: p["total_cost"],
            default=None,
        )
        out.append(
            f"* (a') The same service, when the controller posts the largest minute rate of "
            f"the last 5 minutes instead of their mean: ${m['total_cost']:.0f} (rental "
            f"${m['rental']:.0f}, penalties ${m['penalties']:.0f}, "
            f"{pct(m['violation_share'], 2)} violating, churn {m['churn_gpus']})"
            + (
                f" — {rel(m['total_cost'], best_static['total_cost'])} than the best fixed "
                f"plan ({best_static['label']})."
                if best_static
                else "."
            )
        )
    if "svc-agh-cc0" in pols:
        b = pols["svc-agh-cc0"]
        out.append(
            f"* Change cost: with change_cost_per_gpu = 0 (b) the service churns "
            f"{b['churn_gpus']} GPUs (vs {a['churn_gpus']}) and ends at ${b['total_cost']:.0f}"
            f" (${b['total_with_reconfiguration']:.0f} once reloads are charged at $0.5/GPU, "
            f"vs ${a['total_with_reconfiguration']:.0f} for (a)): the change cost keeps "
            f"replicas a little longer, which both saves reloads and absorbs bursts."
        )
    if "gh" in pols:
        g = pols["gh"]
        out.append(
            f"* GH re-planning (e): ${g['total_cost']:.0f} ({pct(g['violation_share'], 2)} "
            f"violating, {g['mean_gpus']:.1f} GPUs, churn {g['churn_gpus']}) — "
            f"{rel(g['total_cost'], a['total_cost'])} than the service's AGH. GH rents more "
            f"(${g['rental']:.0f} vs ${a['rental']:.0f}) and that extra capacity absorbs "
            f'bursts; the paper\'s "GH re-planning gains nothing" compares GH re-planning '
            f"with GH fixed, which we did not run."
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DOCS / "results.md")
    args = ap.parse_args()
    st, ro = load("stress.json"), load("rolling.json")
    if st is None or ro is None:
        raise SystemExit("run bench/stress.py and bench/rolling.py first")
    sweep, extra, cmp = load("rolling_sweep.json"), load("rolling_extra.json"), load("compare.json")
    runs = merge_runs(ro, sweep, extra)
    main_sigma = ro["runs"][0]["sigma"]
    run = next(r for r in runs if r["sigma"] == main_sigma)

    figs = {
        "cost": plot_stress(st, "realised_cost", "realised cost ($/h)", "stress_cost.png"),
        "viol": plot_stress(
            st,
            "violation_share",
            "violating share of demand (%)",
            "stress_violations.png",
            scale=100.0,
        ),
        "breakdown": plot_breakdown(st),
        "headroom": plot_headroom(st),
        "demand": plot_demand(run),
        "rcost": plot_rolling_cost(run),
        "gpus": plot_rolling_gpus(run),
    }
    if len(runs) > 1:
        figs["sigma"] = plot_sigma(runs)
    gap_note = "bench/results/compare.json does not exist yet: the gap-by-size plot is skipped."
    if cmp is not None:
        rows = compare_rows(cmp)
        if rows:
            figs["gap"] = plot_gap(rows)
            gap_note = ""
        else:
            gap_note = "bench/results/compare.json has no rows this report can read: skipped."

    sm, rm = st["meta"], ro["meta"]
    md = [
        "# Results: stress and rolling re-planning (issue #5)",
        "",
        "Generated by `python3 bench/report.py` from `bench/results/*.json`; do not edit by "
        "hand. Regenerate everything with",
        "",
        "```bash",
        "python3 bench/stress.py && python3 bench/rolling.py && python3 bench/report.py",
        "```",
        "",
        f"* stress: `{sm['command']}` — git {sm['git']}, {sm['machine']}, "
        f"{sm['wall_s']:.0f} s wall; AGH seed {sm['seed']}, budget {sm['agh_budget_s']} s; "
        f"MILP (CBC) limit {sm['milp_time_limit_s']:.0f} s.",
        f"* rolling: `{rm['command']}` — git {rm['git']}, {rm['machine']}, "
        f"{rm['wall_s']:.0f} s wall (service phase {rm['service_phase_wall_s']:.0f} s); "
        f"seed {rm['seed']}, service AGH budget {rm['service_time_budget_s']} s, "
        f"{rm['minutes'] // rm['step_min']} re-plans per service policy.",
    ]
    for label, res in (("σ sweep", sweep), ("extra policy", extra)):
        if res:
            md.append(
                f"* {label}: `{res['meta']['command']}` — git {res['meta']['git']}, "
                f"{res['meta']['wall_s']:.0f} s wall."
            )
    md += [
        "",
        "Money is in $ of the demo scenario (its catalog prices, $0.01–0.05 penalty per "
        "unmet or violating request). The paper's absolute dollars come from a different "
        "fleet and horizon and are not comparable; shares and relative changes are.",
        "",
        "## Paper vs ours",
        "",
        *paper_table(st, run),
        "",
        *discussion(st, run),
        "",
        "## 1. Stress (bench/stress.py)",
        "",
        "Plans are made once for the modelled world, then held fixed while the world is "
        "worse. Semantics (the evaluator's, `app/engine/evaluate.py`): with latency × f each "
        "pair's B* and throughput are recomputed against the SLOs; a deployment runs at "
        "full capacity (the headroom is used); traffic beyond full capacity, or on a pair "
        "that no longer meets its SLO at any batch, misses the SLO; with error × f the "
        "requests answered wrongly beyond a type's error bound count as accuracy "
        "violations; realised cost = rental + unmet penalty for planned-unmet and for "
        "every violating request.",
        "",
        f"![realised cost vs stress]({figs['cost']})",
        "",
        f"![violations vs stress]({figs['viol']})",
        "",
        f"![SLO vs accuracy at 1.5x]({figs['breakdown']})",
        "",
        f"![headroom sweep]({figs['headroom']})",
        "",
        stress.markdown(st),
        "",
        "## 2. Rolling re-planning over a day (bench/rolling.py)",
        "",
        "The planning goes through the REST service (`python3 -m app serve` subprocess: "
        "PUT /v1/cluster, then every 5 simulated minutes POST /v1/cluster/demand and "
        "GET /v1/plan?wait_for_generation=N); the accounting evaluates the plan in force "
        "each simulated minute against that minute's demand. Construction of the demand "
        "series and the accounting rules: the docstring of `bench/rolling.py`.",
        "",
        f"![demand]({figs['demand']})",
        "",
        f"![cost over the day]({figs['rcost']})",
        "",
        f"![GPUs by type]({figs['gpus']})",
        "",
        rolling.markdown({"runs": runs}),
        "",
    ]
    svc = {n: p["service"] for n, p in run["policies"].items() if "service" in p}
    if svc:
        md += [
            "Service behaviour during the run:",
            "",
            "| policy | re-plans | round trip mean / max (s) | solver wall mean (s) "
            "| AGH terminations | plans published infeasible |",
            "|---|---|---|---|---|---|",
        ]
        for n, s in svc.items():
            md.append(
                f"| {n} | {len(run['policies'][n]['per_step_churn'])} | "
                f"{s['round_trip_s_mean']:.2f} / {s['round_trip_s_max']:.2f} | "
                f"{s['solver_wall_s_mean']:.2f} | "
                + ", ".join(f"{k} {v}" for k, v in s["terminations"].items())
                + f" | {s['infeasible_plans']} |"
            )
        md.append("")
    if "sigma" in figs:
        md += [f"![cost vs sigma]({figs['sigma']})", ""]
    md += ["## 3. AGH vs MILP by instance size", ""]
    md.append(f"![gap by size]({figs['gap']})" if "gap" in figs else gap_note)
    md.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {args.out} and {len(figs)} figures in {IMG}")


if __name__ == "__main__":
    main()
