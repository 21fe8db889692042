"""Write docs/results.md and the plots in docs/img/ from the studies' JSON.

    python3 bench/stress.py && python3 bench/rolling.py && python3 bench/report.py

Reads bench/results/stress.json and rolling.json (required), rolling_tuning.json
(optional: the control-loop variants tried on the tuning days) and compare.json
(optional: AGH vs MILP by instance size). Every figure in the report is read from
those files; the paper's figures are the ones in reference/paper-results.md.
Matplotlib runs on the Agg backend.
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

import crowd_bound
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
    "svc-last": {"color": "tab:orange", "lw": 1.0},
    "svc-wq": {"color": "tab:blue", "lw": 1.6},
    "svc-ucm": {"color": "tab:green", "lw": 1.6},
    "svc-mean": {"color": "tab:red", "lw": 1.0},
    "oracle-milp": {"color": "black", "lw": 0.8, "ls": ":"},
    "oracle-agh": {"color": "0.4", "lw": 0.8, "ls": ":"},
    "fixed": {"color": "tab:purple", "lw": 1.2, "ls": "--"},
}
GPU_COLORS = {
    "H200-SXM": "#08306b",
    "H100-SXM": "#2171b5",
    "A100-SXM-80GB": "#6baed6",
    "L40S": "#74c476",
    "L4": "#c7e9c0",
    "RTX-4090": "#fd8d3c",
}


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
                    u,
                    [100 * r["at_1_5"][axis]["violation_share"] for r in rows],
                    marker="o",
                    color=color,
                    ls=ls,
                    label=f"{key}: {AXIS_TITLE[axis]} = 1.5",
                )
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


def _span_hours(d: dict[str, Any]) -> np.ndarray:
    n = d["minutes"]
    return (d.get("start_minute_of_day", 0) + np.arange(n)) / 60.0


def _fixed_name(d: dict[str, Any]) -> str | None:
    return d.get("best_fixed")


def _save_day_timelines(fig: Any, axes: Any, ylabel: str, legend_cols: int, name: str) -> str:
    """Style a column of per-day timelines (one row a day, hours along x) and save it."""
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=legend_cols, loc="upper left")
    axes[-1, 0].set_xlabel("hour of day")
    fig.tight_layout()
    return save(fig, name)


def plot_rolling_days(ro: dict[str, Any]) -> str:
    """Per day: the actual per-minute rate, the rate each service policy's plan in
    force was made for, and what the best fixed plan was sized for."""
    days = ro["days"]
    fig, axes = plt.subplots(len(days), 1, figsize=(12, 3.3 * len(days)), squeeze=False)
    for ax, d in zip(axes[:, 0], days, strict=True):
        t = _span_hours(d)
        v = np.asarray(d["demand"][d["query_type"]])
        ax.plot(t, v, color="0.55", lw=0.5, label="actual (requests in the minute / 60)")
        pols = d["policies"]
        for name in ("svc-last", "svc-wq", "svc-ucm"):
            if name in pols and "per_minute" in pols[name]:
                ax.step(t, pols[name]["per_minute"]["planned_rps"], where="post",
                        label=f"{name}: planned rate in force", **POLICY_STYLE[name])  # fmt: skip
        best = _fixed_name(d)
        if best:
            ax.axhline(pols[best]["sized_for_rps"], label=f"best fixed ({best}) sized for",
                       **POLICY_STYLE["fixed"])  # fmt: skip
        ax.set_title(f"{d['name']}{' (held out)' if d.get('held_out') else ''}: "
                     f"{d['description']}", fontsize=9)  # fmt: skip
    return _save_day_timelines(fig, axes, "requests/s", 3, "rolling_days.png")


def plot_rolling_gpus(ro: dict[str, Any]) -> str:
    """Per day: GPUs in force each minute, per policy."""
    days = ro["days"]
    fig, axes = plt.subplots(len(days), 1, figsize=(12, 3.0 * len(days)), squeeze=False)
    for ax, d in zip(axes[:, 0], days, strict=True):
        t = _span_hours(d)
        pols = d["policies"]
        best = _fixed_name(d)
        for name in ("svc-mean", "svc-last", "svc-wq", "svc-ucm", "oracle-milp", best):
            if name and name in pols and "per_minute" in pols[name]:
                style = POLICY_STYLE["fixed" if name == best else name]
                ax.step(
                    t,
                    pols[name]["per_minute"]["gpus"],
                    where="post",
                    label=name + (" (best fixed)" if name == best else ""),
                    **style,
                )
        ax.set_title(f"{d['name']}: GPUs in force", fontsize=9)
    return _save_day_timelines(fig, axes, "GPUs", 6, "rolling_gpus.png")


def plot_rolling_cost(ro: dict[str, Any]) -> str:
    """Per day: $ per policy, rental + penalties stacked, reloads hatched on top."""
    days = ro["days"]
    fig, axes = plt.subplots(1, len(days), figsize=(4.2 * len(days), 4.6), squeeze=False)
    for ax, d in zip(axes[0], days, strict=True):
        pols = d["policies"]
        best = _fixed_name(d)
        names = [n for n in ("svc-last", "svc-wq", "svc-ucm", "svc-mean", "agh-peak",
                             "milp-peak", best, "oracle-agh", "oracle-milp")
                 if n and n in pols]  # fmt: skip
        names = list(dict.fromkeys(names))
        x = np.arange(len(names))
        rental = np.array([pols[n]["rental"] for n in names])
        pen = np.array([pols[n]["penalties"] for n in names])
        rec = np.array([pols[n]["reconfiguration_cost"] for n in names])
        ax.bar(x, rental, color="tab:blue", label="rental")
        ax.bar(x, pen, bottom=rental, color="tab:red", label="penalties")
        ax.bar(x, rec, bottom=rental + pen, color="none", edgecolor="0.3", hatch="//",
               label="reloads ($0.5/GPU)")  # fmt: skip
        if best:
            ax.axhline(pols[best]["total_cost"], color="tab:purple", ls="--", lw=1)
            ax.axhline(0.75 * pols[best]["total_cost"], color="tab:purple", ls=":", lw=1)
        top = max(rental + pen) * 1.15
        cap = min(top, 3.0 * (pols[best]["total_cost"] if best else top))
        ax.set_ylim(0, cap)
        for k, val in enumerate(rental + pen + rec):
            if val > cap:
                ax.text(k, 0.95 * cap, f"${val:.0f}", ha="center", fontsize=7, rotation=90)
        ax.set_xticks(x, [n + (" (best)" if n == best else "") for n in names], rotation=60,
                      fontsize=7)  # fmt: skip
        ax.set_title(f"{d['name']}: $ over {d['minutes'] / 60:g} h", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("$ (dashed: best fixed; dotted: 25% below it)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save(fig, "rolling_cost.png")


SOLVER_LABELS = {"gh": "GH", "agh1": "AGH 1 s", "agh5": "AGH 5 s"}


def compare_rows(cmp: Any) -> list[dict[str, Any]]:
    """The rows of bench/compare.py's result (`instances`): per instance with a
    proven optimum and per heuristic run that produced a feasible plan, the
    instance's size (query types), its group (tuned / held-out) and the plan's cost
    above the optimum. Instances without a proven optimum, and plans the evaluator
    calls infeasible, have no gap to show and are left out (compare.md counts them)."""
    instances = cmp.get("instances") if isinstance(cmp, dict) else None
    out = []
    for inst in sorted(instances or [], key=lambda i: i.get("types", 0)):
        ref = inst.get("reference") or {}
        if ref.get("kind") != "optimum" or not ref.get("value"):
            continue
        for key, label in SOLVER_LABELS.items():
            run = inst.get(key) or {}
            if not run.get("feasible") or not isinstance(run.get("cost"), int | float):
                continue
            out.append({"size": str(inst["types"]), "variant": f"{inst['group']} {label}",
                        "gap": run["cost"] / ref["value"] - 1.0, "bound_gap": None})  # fmt: skip
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
                ax.scatter(xs, ys, marker=marker, label=f"{variant or 'all'} {what}")
    ax.axhspan(5, 10, color="grey", alpha=0.15, label="paper: AGH 5–10% above optimum")
    ax.set_yscale("symlog", linthresh=1.0)  # GH can be several times the optimum
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set_xlabel("query types")
    ax.set_ylabel("cost above the proven optimum (%)")
    ax.set_title("GH / AGH vs the exact MILP by instance size (bench/compare.py)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, "gap_by_size.png")


# ------------------------------------------------------------------------------------
# The report


def paper_table(st: dict[str, Any], ro: dict[str, Any]) -> list[str]:
    d, c = st["scenarios"]["demo"], st["scenarios"]["critical"]

    def s15(entry: dict[str, Any], p: str, axis: str = "inflation") -> dict[str, float]:
        return dict(entry["stress"][p][axis][-1])

    def s10(entry: dict[str, Any], p: str) -> dict[str, float]:
        return dict(entry["stress"][p]["inflation"][0])

    default = ro.get("meta", {}).get("default_policy", rolling.DEFAULT_POLICY)
    trace_days = [d for d in ro["days"] if not d.get("held_out")]

    def save_vs(other: str) -> str:
        parts = []
        for d in trace_days:
            pols = d["policies"]
            if default in pols and other in pols:
                a, o = pols[default]["total_cost"], pols[other]["total_cost"]
                parts.append(f"{d['name']} {100 * (a / o - 1):+.1f}%")
        return ", ".join(parts) or "not run"

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
    best = ", ".join(
        f"{d['name']} {100 * (d['policies'][default]['total_cost'] / d['policies'][d['best_fixed']]['total_cost'] - 1):+.1f}% ({d['best_fixed']})"  # noqa: E501
        for d in trace_days
        if d.get("best_fixed") and default in d["policies"]
    )
    lines += [
        f"| re-plan vs AGH fixed 24 h | −17.3% (σ 0.04), −16.0% (σ 0.05) | {default} "
        f"(raw minutes, 3-min actuation) vs AGH fixed for the peak hour: "
        f"{save_vs('agh-peak')}; vs the best fixed plan (hindsight): {best or 'not run'} |",
        f"| re-plan vs MILP fixed 24 h | −45.2% / −47.9% | vs MILP fixed for the peak "
        f"hour: {save_vs('milp-peak')} |",
        "| GH re-planning | gains nothing | not run in this study (the service re-plans "
        "with AGH) |",
    ]
    lines += [
        "",
        "Cost changes are (re-planning − fixed) / fixed over the day: negative means "
        "re-planning is cheaper. Totals are rental + penalties; reloads are not included "
        "(the tables give them separately). The stress rows come from stress.json as "
        "recorded in its provenance line above (not re-run with this report).",
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


def discussion(st: dict[str, Any]) -> list[str]:
    d = st["scenarios"]["demo"]
    agh_rows = d["stress"]["AGH"]["inflation"]
    agh, m8, m1 = (d["stress"][p]["inflation"][-1] for p in ("AGH", "MILP u=0.8", "MILP u=1.0"))
    hs = {r["max_utilization"]: r for r in st["headroom"]["demo"]["AGH"] if "no_plan" not in r}
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
            + (
                f"Latency violations stay < 4% at 1.5× only for u ≤ {max(ok)}; "
                if ok
                else "No swept headroom keeps latency violations < 4% at 1.5×; "
            )
            + "1/1.5 = 0.67 is the bound from demand alone, the B* loss under slower "
            "latency needs more."
        )
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
    return out


def rolling_summary(ro: dict[str, Any]) -> list[str]:
    """Per day, in numbers: the default loop against the best fixed plan, the
    oracle bounds and the old posted-mean loop."""
    default = ro.get("meta", {}).get("default_policy", rolling.DEFAULT_POLICY)
    out = []
    for d in ro["days"]:
        pols = d["policies"]
        if default not in pols:
            continue
        a = pols[default]
        line = (
            f"* **{d['name']}**{' (held out)' if d.get('held_out') else ''}: {default} "
            f"${a['total_cost']:.1f} (rental ${a['rental']:.1f}, penalties "
            f"${a['penalties']:.1f}; {pct(a['violation_share'], 3)} violating, churn "
            f"{a['churn_gpus']} GPUs, {a['mean_gpus']:.1f} GPUs on average, coverage "
            f"{rolling._cov(a)})"
        )
        best = d.get("best_fixed")
        if best:
            b = pols[best]
            line += (
                f"; best fixed plan {best} ${b['total_cost']:.1f} "
                f"({pct(b['violation_share'], 3)} violating): re-planning is "
                f"{rel(a['total_cost'], b['total_cost'])}"
            )
            bounds = [
                f"{k} {rel(pols[k]['total_cost'], b['total_cost'])}"
                for k in ("oracle-milp", "oracle-agh")
                if k in pols
            ]
            if bounds:
                line += "; perfect foresight with no delay would be " + ", ".join(bounds)
        others = [
            f"{k} ${pols[k]['total_cost']:.1f} ({pct(pols[k]['violation_share'], 3)}, churn "
            f"{pols[k]['churn_gpus']})"
            for k in ("svc-last", "svc-ucm", "svc-wq", "svc-mean")
            if k in pols and k != default
        ]
        if others:
            line += ". Others: " + ", ".join(others)
        out.append(line + ".")
        fresh = a.get("fresh_rental_at_planned") or {}
        if best and "agh" in fresh and "milp" in fresh and "oracle-milp" in pols:
            b = pols[best]["total_cost"]
            om, fm, fa = pols["oracle-milp"]["rental"], fresh["milp"], fresh["agh"]
            out.append(
                f"  * where {default}'s ${a['total_cost']:.1f} goes, against the best fixed "
                f"${b:.1f}: the exact (MILP) plan for each minute's actual rate rents "
                f"${om:.1f} ({rel(om, b)}); for the rate the loop planned instead (forecast "
                f"quantile, stabilization, actuation delay) ${fm:.1f} "
                f"({signed_dollars(fm - om)}); fresh AGH plans for those rates ${fa:.1f} "
                f"({signed_dollars(fa - fm)}: AGH above the optimum); the warm-started plans "
                f"under the change cost the service actually kept ${a['rental']:.1f} "
                f"({signed_dollars(a['rental'] - fa)}); penalties ${a['penalties']:.1f}."
            )
    return out


def event_windows() -> dict[str, tuple[int, int]]:
    """Minutes of the day of each crowd (the held-out days' and the surge tuning
    day's), from its start to 15 minutes after it is back (bench/demand_days.py)."""
    import demand_days as dd  # local: only the report's event lines need it

    return {
        "flash-crowd": (dd.FLASH_START_MIN, dd.FLASH_HOLD_END_MIN + dd.FLASH_RISE_MIN + 15),
        "ramp-6h": (dd.RAMP_FLASH_START_MIN, dd.RAMP_FLASH_HOLD_END_MIN + dd.FLASH_RISE_MIN + 15),
        "surge": (dd.SURGE_START_MIN, dd.SURGE_HOLD_END_MIN + dd.SURGE_RISE_MIN + 15),
    }


def event_lines(ro: dict[str, Any]) -> list[str]:
    """On the days with a crowd: how much of each service policy's violating demand
    fell in it."""
    out = []
    for d in ro["days"]:
        win = event_windows().get(d["name"])
        if win is None:
            continue
        start = d.get("start_minute_of_day", 0)
        parts = []
        for k in ("svc-last", "svc-wq", "svc-ucm", "svc-mean"):
            p = d["policies"].get(k)
            if not p or "per_minute" not in p:
                continue
            v = np.asarray(p["per_minute"]["violating_rps"])
            m = start + np.arange(len(v))
            inside = float(v[(m >= win[0]) & (m < win[1])].sum())
            total = float(v.sum())
            share = inside / total if total > 0 else 0.0
            parts.append(f"{k} {pct(share, 0)} of {60 * total:.0f} violating requests")
        if parts:
            out.append(
                f"* {d['name']}: in the crowd ({win[0] // 60:02d}:{win[0] % 60:02d}–"
                f"{win[1] // 60:02d}:{win[1] % 60:02d}): " + ", ".join(parts) + "."
            )
    return out


def crowd_lines(ro: dict[str, Any]) -> list[str]:
    """Why the cost and violation targets cannot all be met (bench/crowd_bound.py),
    when the study has the conversation day and a crowd day."""
    days = {d["name"]: d for d in ro["days"]}
    cost_day = days.get(crowd_bound.COST_DAY, {})
    if (
        not cost_day.get("fresh_plan_rental_curves")  # a run without the oracles
        or not cost_day.get("best_fixed")
        or not days.keys() & crowd_bound.CROWDS.keys()
    ):
        return []
    names = days.keys()
    b = crowd_bound.bound(ro)
    milp = b["by_planner"].get("milp") or next(iter(b["by_planner"].values()))
    days = ", ".join(f"{k} x{c['multiplier']:.2f}" for k, c in b["crowds"].items() if k in names)
    return [
        "The targets conflict (`python3 bench/crowd_bound.py`): plans made before a crowd's "
        f"first minute was observed serve its first {b['delay_min'] + 1} minutes, which "
        f"reach {days} the crowd-free demand; a controller that cannot know when a crowd "
        "starts and violates nothing at the onset (the best fixed plans violate nothing "
        f"there) keeps {b['capacity_ratio']:.2f}x capacity at every minute, which on the "
        f"{crowd_bound.COST_DAY} day rents at least ${milp['lower']:.2f} "
        f"({100 * milp['lower_vs_best_fixed']:+.1f}% against the best fixed plan) even with "
        "perfect knowledge of that demand and no delay; the cost target allows "
        f"${b['target_cost']:.2f} ({milp['break_even_ratio']:.2f}x).",
        "",
    ]


def signed_dollars(x: float) -> str:
    return f"{'+' if x >= 0 else '−'}${abs(x):.1f}"


def target_lines(ro: dict[str, Any]) -> list[str]:
    """The issue's targets for the default policy, met or missed and by how much."""
    default = ro.get("meta", {}).get("default_policy", rolling.DEFAULT_POLICY)
    q = ro.get("meta", {}).get("demand_quantile")
    out = []
    for d in ro["days"]:
        v = rolling.verdicts(d, default, q)
        if not v:
            continue
        parts = []
        if "saving_vs_best_fixed" in v:
            sv = v["saving_vs_best_fixed"]
            how = f"{100 * sv:.1f}% cheaper" if sv >= 0 else f"{-100 * sv:.1f}% dearer"
            parts.append(
                f"cost {'met' if v['saving_met'] else 'missed'} ({how} than {v['best_fixed']}"
                + ("" if v["saving_met"] else f", {100 * (0.25 - sv):.1f} points short")
                + ")"
            )
            mine, theirs = v["violation_vs_best_fixed"]
            parts.append(
                f"violations {'met' if v['violation_met'] else 'missed'} "
                f"({pct(mine, 3)} vs {pct(theirs, 3)})"
            )
        if "coverage" in v:
            own, svc, target = v["coverage"]
            worst = max(abs(own - target), abs((svc if svc is not None else own) - target))
            parts.append(
                f"coverage {'met' if v['coverage_met'] else 'missed'} ({pct(own)} own, "
                f"{'-' if svc is None else pct(svc)} service, target {pct(target, 0)}"
                + ("" if v["coverage_met"] else f", {100 * (worst - 0.02):.1f} points out")
                + ")"
            )
        if "churn" in v:
            parts.append(
                f"churn {'met' if v['churn_met'] else 'missed'} ({v['churn'][0]} vs "
                f"{v['churn'][1]} GPUs for svc-mean)"
            )
        held = " (held out)" if d.get("held_out") else ""
        out.append(f"* {d['name']}{held}: " + "; ".join(parts) + ".")
    return out


OLD_DEFAULTS = ("stabilization 600 s (the old default)", "svc-wq")  # variant, policy
RERUN = "defaults, run again"


def _variant(tu: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((v for v in tu.get("variants", []) if v["name"] == name), None)


def defaults_section(tu: dict[str, Any] | None, ro: dict[str, Any]) -> list[str]:
    """The old defaults (window_quantile, 600 s stabilization) against the new ones
    on the tuning days, and how far a second run of the same days moves."""
    if not tu:
        return []
    default = ro.get("meta", {}).get("default_policy", rolling.DEFAULT_POLICY)
    old = _variant(tu, OLD_DEFAULTS[0])
    again = _variant(tu, RERUN)
    main_days = {d["name"]: d for d in ro["days"]}
    out = []
    for d in (old or {}).get("days", []):
        m = main_days.get(d["name"])
        if m is None or OLD_DEFAULTS[1] not in d["policies"] or default not in m["policies"]:
            continue
        a, b = d["policies"][OLD_DEFAULTS[1]], m["policies"][default]
        best = m.get("best_fixed")
        ref = m["policies"][best]["total_cost"] if best else None
        vs = (
            f" ({100 * (a['total_cost'] / ref - 1):+.1f}% → "
            f"{100 * (b['total_cost'] / ref - 1):+.1f}% vs {best})"
            if ref
            else ""
        )
        out.append(
            f"* {d['name']}: old defaults ({OLD_DEFAULTS[1]}, stabilization 600 s) "
            f"${a['total_cost']:.1f}, coverage {rolling._cov(a)}, churn {a['churn_gpus']}, "
            f"{pct(a['violation_share'], 3)} violating → new defaults ({default}, 300 s) "
            f"${b['total_cost']:.1f}, coverage {rolling._cov(b)}, churn {b['churn_gpus']}, "
            f"{pct(b['violation_share'], 3)} violating{vs}."
        )
    if again:
        spread = []
        for d in again["days"]:
            m = main_days.get(d["name"])
            for k, p in d["policies"].items():
                if m is not None and k in m["policies"]:
                    spread.append(
                        f"{d['name']} {k} ${m['policies'][k]['total_cost']:.1f} / "
                        f"${p['total_cost']:.1f}"
                    )
        if spread:
            out.append(
                "* Run-to-run: the same days and settings run twice (main run / "
                "tuning run): " + ", ".join(spread) + ". The service's AGH stops at a 1 s "
                "wall-clock deadline on some conversation re-plans (see the terminations "
                "below), and each plan is warm-started from the one before, so a different "
                "plan early on can carry through the day."
            )
    if not out:
        return []
    return ["### What changed in the control loop's defaults, and why", "", *out, ""]


def tuning_section(tu: dict[str, Any] | None, ro: dict[str, Any]) -> list[str]:
    if not tu:
        return []
    m = tu["meta"]
    return [
        "### Control-loop variants tried on the tuning days",
        "",
        f"`{m['command']}` — git {m['git']}, {m['wall_s']:.0f} s wall. Each variant changes "
        "the service policies' control-loop fields (everything else as in the main run); "
        "'vs best fixed' is against the main run's best fixed plan of the same day. The "
        "held-out days (flash crowd, ramp, random walk) were not used to choose anything.",
        "",
        rolling.tuning_markdown(tu, ro),
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DOCS / "results.md")
    args = ap.parse_args()
    st, ro = load("stress.json"), load("rolling.json")
    if st is None or ro is None or "days" not in ro:
        raise SystemExit("run bench/stress.py and bench/rolling.py first")
    tu, cmp = load("rolling_tuning.json"), load("compare.json")

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
        "days": plot_rolling_days(ro),
        "rcost": plot_rolling_cost(ro),
        "gpus": plot_rolling_gpus(ro),
    }
    gap_note = "bench/results/compare.json does not exist yet: the gap-by-size plot is skipped."
    if cmp is not None:
        rows = compare_rows(cmp)
        if rows:
            figs["gap"] = plot_gap(rows)
            gap_note = ""
        else:
            gap_note = "bench/results/compare.json has no rows this report can read: skipped."

    sm, rm = st["meta"], ro["meta"]
    sp = rm.get("service_policy", {})
    md = [
        "# Results: stress and rolling re-planning (issues #5, #11)",
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
        f"MILP (CBC) limit {sm['milp_time_limit_s']:.0f} s. Not re-run for this report: "
        f"its figures are those of git {sm['git']}, before the control-loop work of #11 "
        "(the stress evaluation of a fixed plan does not use the control loop).",
        f"* rolling: `{rm['command']}` — git {rm['git']}, {rm['machine']}, "
        f"{rm['wall_s']:.0f} s wall, started {rm.get('started_at', '?')}; seed {rm['seed']}, "
        f"Poisson counts {'yes' if rm.get('poisson') else 'no'}, actuation delay "
        f"{rm['actuation_delay_s']:.0f} s, service AGH budget {rm['service_time_budget_s']} s; "
        "service policy: " + ", ".join(f"{k} {v}" for k, v in sp.items()) + ".",
    ]
    if tu:
        md.append(f"* control-loop variants: `{tu['meta']['command']}` — git {tu['meta']['git']}.")
    md += [
        "",
        "Money is in $ of the demo scenario (its catalog prices, $0.01–0.05 penalty per "
        "unmet or violating request). The paper's absolute dollars come from a different "
        "fleet and horizon and are not comparable; shares and relative changes are.",
        "",
        "## Paper vs ours",
        "",
        *paper_table(st, ro),
        "",
        *discussion(st),
        "",
        "### Rolling re-planning: what we see",
        "",
        *rolling_summary(ro),
        "",
        f"Targets of issue #11 §7 for the default loop ({rm.get('default_policy')}), per day:",
        "",
        *target_lines(ro),
        "",
        "Where the violations of the days with a crowd happened:",
        "",
        *event_lines(ro),
        "",
        *crowd_lines(ro),
        *defaults_section(tu, ro),
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
        "## 2. Rolling re-planning, the control loop closed on observations (bench/rolling.py)",
        "",
        "A controller that does nothing clever drives the REST service (`python3 -m app "
        "serve` subprocess): every simulated minute it POSTs that minute's request count "
        "to /v1/observations/demand and, when the answer says `changed`, long-polls "
        "GET /v1/plan?wait_for_generation=N. A plan published at minute m is in force from "
        "minute m + 3 (180 s actuation delay). Each minute the plan in force is evaluated "
        "against the minute's actual demand. Construction of the days, the accounting "
        "rules and the policies: the docstring of `bench/rolling.py`. Columns: $ = rental "
        "+ penalties over the span; violating = requests served outside SLO or accuracy "
        "plus unmet; churn = GPUs added + removed between plans in force; reconfig. = "
        "churn × $0.5; coverage = share of minutes at or below the rate the plan in force "
        "was made for (own accounting / the service's GET /v1/forecast over the span).",
        "",
        f"![demand and planned rates]({figs['days']})",
        "",
        f"![cost per policy]({figs['rcost']})",
        "",
        f"![GPUs in force]({figs['gpus']})",
        "",
        rolling.markdown(ro),
        "",
    ]
    svc = [
        (d["name"], n, p["service"])
        for d in ro["days"]
        for n, p in d["policies"].items()
        if "service" in p
    ]
    if svc:
        md += [
            "Service behaviour during the run:",
            "",
            "| day | policy | posts | plans published | round trip mean / max (s) "
            "| solver wall mean (s) | AGH terminations | plans published infeasible | wall s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for day, n, sv in svc:
            md.append(
                f"| {day} | {n} | {sv['posts']} | {sv['plans_published']} | "
                f"{sv['round_trip_s_mean']:.2f} / {sv['round_trip_s_max']:.2f} | "
                f"{sv['solver_wall_s_mean']:.2f} | "
                + ", ".join(f"{k} {v}" for k, v in sv["terminations"].items())
                + f" | {sv['infeasible_plans']} | {sv['wall_s']:.0f} |"
            )
        md.append("")
    md += tuning_section(tu, ro)
    md += ["## 3. AGH vs MILP by instance size", ""]
    md.append(f"![gap by size]({figs['gap']})" if "gap" in figs else gap_note)
    if cmp is not None and "gap" in figs:
        meta = cmp.get("meta", {})
        md += ["", f"Each point is one instance with an optimum proven by HiGHS and CBC and one "
               f"heuristic plan the evaluator accepts (git {meta.get('git', '?')}); the "
               f"per-group means and worst cases, the plans found infeasible and the solve "
               f"times are in bench/results/compare.md."]  # fmt: skip
    md.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {args.out} and {len(figs)} figures in {IMG}")


if __name__ == "__main__":
    main()
