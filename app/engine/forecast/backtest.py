"""Replay a per-minute demand series through `forecast_demand` and score it.

At every re-plan time t (every `step_min` minutes of the test span) the forecast
sees the minutes before t as 60 s observation windows and plans one rate; the
actual minutes it is judged on are those of [t + actuation_delay_s, t +
actuation_delay_s + replan_interval_s]. Coverage is the share of those minutes at
or below the planned rate; over-provisioning is the mean planned over the mean
actual rate over the same minutes; worst shortfall is the largest actual / planned
- 1 (0 when every minute is covered).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.engine.forecast.domain import MINUTE_S, ForecastConfig
from app.engine.forecast.forecast import UcmFitCache, forecast_demand, target_minutes
from app.engine.forecast.resample import minute_observations
from app.engine.forecast.ucm import DAY_MIN


@dataclass(frozen=True, slots=True)
class BacktestResult:
    method: str
    quantile: float
    replans: int
    minutes: int
    coverage: float
    over_provisioning: float
    worst_shortfall: float
    planned: tuple[float, ...]
    methods_used: tuple[str, ...]
    notes: tuple[str, ...]


def backtest(
    rates: Sequence[float] | np.ndarray,
    config: ForecastConfig,
    test_start_min: int,
    test_minutes: int,
    *,
    start_s: float = 0.0,
    step_min: int | None = None,
    query_type: str = "demand",
    cache: UcmFitCache | None = None,
) -> BacktestResult:
    """`rates[m]` is the rate (req/s) of minute m, starting at `start_s`; NaN is a
    missing minute (no observation). Re-plans at minutes test_start_min + k x
    step_min (default: the re-plan interval) within the test span."""
    y = np.asarray(rates, dtype=np.float64)
    step = step_min or max(1, round(config.replan_interval_s / MINUTE_S))
    keep_min = int(max(config.history_days * DAY_MIN, config.window_min)) + 60
    idx = [m for m in range(y.size) if not np.isnan(y[m])]
    obs = minute_observations(y, query_type, start_s)  # obs[k] is minute idx[k]
    U = target_minutes(config)
    planned: list[float] = []
    covered = compared = 0
    sum_plan = sum_actual = 0.0
    worst = 0.0
    used: set[str] = set()
    notes: set[str] = set()
    for t in range(test_start_min, test_start_min + test_minutes, step):
        lo = bisect.bisect_left(idx, t - keep_min)
        hi = bisect.bisect_left(idx, t)
        fc = forecast_demand(
            {query_type: obs[lo:hi]}, config, now_s=start_s + MINUTE_S * t, cache=cache
        )[query_type]
        planned.append(fc.rate)
        used.add(fc.method)
        if fc.note:
            notes.add(fc.note)
        target = y[t + U[t + U < y.size]]
        target = target[~np.isnan(target)]
        covered += int((target <= fc.rate * (1 + 1e-12)).sum())
        compared += target.size
        sum_plan += fc.rate * target.size
        sum_actual += float(target.sum())
        if target.size and fc.rate > 0:
            worst = max(worst, float(target.max()) / fc.rate - 1.0)
        elif target.size and float(target.max()) > 0:
            worst = float("inf")
    return BacktestResult(
        config.method,
        config.quantile,
        len(planned),
        compared,
        covered / compared if compared else float("nan"),
        sum_plan / sum_actual if sum_actual > 0 else float("nan"),
        max(worst, 0.0),
        tuple(planned),
        tuple(sorted(used)),
        tuple(sorted(notes)),
    )
