"""What planning at a quantile can save at best on the random-walk day (issue #11).

    python3 bench/quantile_bound.py            # reads bench/results/rolling.json
    python3 bench/quantile_bound.py --quantile 0.9 --out /tmp/qb.md

The random-walk day (bench/demand_days.py) is the one day whose demand is a known
random process: a level (30 req/s x a 3:1 diurnal envelope x a log random walk)
times lognormal minute noise (sd 0.05), counted as Poisson(60 x rate). A forecaster
cannot know more than that level. The *quantile oracle* knows it exactly: each minute
it plans the true `--quantile` of that minute's rate (Monte Carlo over the noise and
the count) and rents the fresh plan made for it, the rental curve the rolling study
recorded (`fresh_plan_rental_curves`: AGH and MILP plans on a 3%-spaced grid of
rates, the grid rate at or just above the planned one). No actuation delay, no change
cost, no dead band or stabilization: a bound, not a policy.

It answers whether the issue's cost target (>= 25% cheaper than the best fixed plan)
is reachable on this day by any loop that plans at the issue's quantile (0.95) with
the fleet's headroom: if the oracle itself is not 25% cheaper, no forecaster is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demand_days as D
from provenance import provenance

DAY_NAME = "random-walk"
SEED = 900  # backtest_days(seed=0) builds the random-walk day from seed + 900
SAMPLES = 20_000


def level(seed: int = SEED, warmup_days: int = D.WARMUP_DAYS) -> np.ndarray:
    """The accounted day's level (req/s per minute): `random_walk_days` without its
    minute noise (the same generator, the same draws)."""
    days = warmup_days + 2
    n = days * D.DAY
    rng = np.random.default_rng([seed, 9])
    walk = np.repeat(np.cumsum(D.RW_STEP_SD * rng.standard_normal(n // 5)), 5)
    env = np.tile(D.envelope(3.0, D.DAY), days)
    lv = D.RW_RATE * env * np.exp(walk - D.RW_NOISE_SD**2 / 2)
    w = warmup_days * D.DAY
    return np.asarray(lv[w : w + D.DAY])


def minute_quantiles(lv: np.ndarray, q: float, samples: int = SAMPLES) -> np.ndarray:
    """Per minute, the `q` quantile of count / 60 where count ~ Poisson(60 x rate) and
    rate = level x exp(sd x z): what a forecaster knowing the level plans."""
    mc = np.random.default_rng(1)
    out = np.empty(len(lv))
    for t, x in enumerate(lv):
        rates = x * np.exp(D.RW_NOISE_SD * mc.standard_normal(samples))
        out[t] = np.quantile(mc.poisson(60.0 * rates) / 60.0, q)
    return out


def bound(study: dict[str, Any], q: float) -> dict[str, Any]:
    day = next(d for d in study["days"] if d["name"] == DAY_NAME)
    lv = level()
    full = D.random_walk_days(SEED, D.WARMUP_DAYS + 2)[D.WARMUP_DAYS * D.DAY :][: D.DAY]
    noise = np.log(full / lv)
    if abs(noise.mean()) > 0.01 or abs(noise.std() - D.RW_NOISE_SD) > 0.01:
        raise SystemExit("the level does not reproduce the study's day: generator changed?")
    planned = minute_quantiles(lv, q)
    actual = np.asarray(day["demand"][day["query_type"]])
    pols = day["policies"]
    best = pols[day["best_fixed"]]["total_cost"]
    out: dict[str, Any] = {
        "quantile": q,
        "coverage_of_actual_minutes": float((actual <= planned).mean()),
        "planned_over_level_mean": float((planned / lv).mean()),
        "best_fixed": {"policy": day["best_fixed"], "total_cost": best},
        "svc_ucm": pols.get("svc-ucm", {}).get("total_cost"),
        "oracle": {},
    }
    for kind, curve in day["fresh_plan_rental_curves"].items():
        grid, rent = np.asarray(curve["grid"]), np.asarray(curve["rental_per_h"])
        idx = np.searchsorted(grid, planned * (1 - 1e-12))
        beyond = int((idx >= len(grid)).sum())
        cost = float(rent[np.minimum(idx, len(grid) - 1)].sum() / 60.0)
        out["oracle"][kind] = {
            "rental": cost,
            "vs_best_fixed": cost / best - 1.0,
            "minutes_beyond_grid": beyond,  # planned above the grid: rental understated
            "actual_rate_oracle": pols.get(f"oracle-{kind}", {}).get("total_cost"),
        }
    return out


def markdown(res: dict[str, Any], meta: dict[str, Any], study_meta: dict[str, Any]) -> str:
    q = res["quantile"]
    lines = [
        f"# Quantile oracle on the random-walk day (q = {q})",
        "",
        f"* command: `{meta['command']}`; git: `{meta['git']}`",
        f"* rental curves and best fixed plan from bench/results/rolling.json "
        f"(git `{study_meta.get('git', '?')}`)",
        "* the level known exactly; each minute planned at the true quantile of its rate "
        "(lognormal noise x Poisson count, Monte Carlo); fresh plans, no delay, no change "
        "cost (see the docstring of bench/quantile_bound.py)",
        "",
        "| planner | quantile-oracle rental $ | vs best fixed | actual-rate oracle $ | "
        "svc-ucm $ | best fixed $ |",
        "|---|---|---|---|---|---|",
    ]
    for kind, o in res["oracle"].items():
        lines.append(
            f"| {kind} | {o['rental']:.2f} | {100 * o['vs_best_fixed']:+.1f}% | "
            f"{o['actual_rate_oracle']} | {res['svc_ucm']} | "
            f"{res['best_fixed']['total_cost']} ({res['best_fixed']['policy']}) |"
        )
    lines += [
        "",
        f"Share of the day's actual minutes at or below the oracle's plan: "
        f"{100 * res['coverage_of_actual_minutes']:.1f}% (the quantile, as it should be); "
        f"planned / level on average: {res['planned_over_level_mean']:.3f}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quantile", type=float, default=0.95)
    ap.add_argument("--study", type=Path, default=Path("bench/results/rolling.json"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/quantile_bound.md"))
    args = ap.parse_args()
    if not 0.0 < args.quantile < 1.0:
        ap.error("--quantile must be within (0, 1)")
    study = json.loads(args.study.read_text())
    res = bound(study, args.quantile)
    meta = provenance()
    text = markdown(res, meta, study.get("meta", {}))
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
