"""Day-long per-minute demand series for the forecast backtest (issue #11).

Every series is requests/s, one value a minute, seeded and deterministic. A day
is 1440 minutes; each backtest day carries its history (warm-up days before it,
each from a different seed) and the minutes after it that the last re-plans of the
day look ahead to.

* code, conversation — built exactly as the rolling-horizon study builds them
  (bench/rolling.py `demand_series`: the demo rates 27.8 / 45.1 req/s, diurnal
  envelope code 10:1 and conversation 2:1 peaking at 15:00, the 2023 Azure traces'
  minute-level burst pattern averaged over 11 / 8 independent copies, volatility
  sigma = 0.04). The test day is rolling.py's own day for the same seed; warm-up
  day k (k days before) uses seed + 1000 k, the day after seed + 3000.
* flash-crowd — a conversation day (seed + 500) on which demand doubles within
  10 minutes at 10:00 (linear 1 -> 2 from 10:00 to 10:10), holds until 11:00 and
  falls back over 10 minutes (11:00 -> 11:10). Warm-up: normal conversation days.
* ramp (6 h) — a type at 10 req/s mean, diurnal envelope 3:1, with *real*
  minute-level bursts: the code trace's burst pattern from one endpoint (a single
  copy, not averaged: minutes with no request at all and bursts of 2-3x), sigma
  0.04. Two normal warm-up days, then 6 hours (08:00-14:00 of day 3) on which
  demand also ramps linearly x1 -> x2.5 beyond the diurnal profile (a launch the
  history has never seen) with a flash crowd on top (x2 within 10 minutes at
  11:30, held to 12:10, back by 12:20). The multiplier stays at 2.5 after 14:00.
  This is the "bursty ramp with a flash crowd" of the Dynamo planner comparison.
* random-walk — an extra held-out day (not in the issue's list): 30 req/s with a
  diurnal envelope 3:1 whose level also drifts as a random walk in log (sd 0.02
  per 5 minutes, ~0.34 a day) and conversation-like minute noise (lognormal,
  sd 0.05). Demand whose level wanders: where the likelihood-fitted variances of
  the learned model matter (on the other days they fall below the floors).

* surge — a tuning day added with the surge guard (after the others, so their
  seeds and draws are unchanged): a conversation day (seed + 300, another draw
  than the flash crowd's) on which demand rises x1.5 within 5 minutes at 16:40,
  after the daily peak, holds to 17:30 and falls back within 5 minutes: a level
  shift of another size, speed and hour than the held-out flash crowd.

Parameters of the forecast methods are chosen on the code and conversation days
(and, for the surge guard, the surge day) only; the flash-crowd, ramp and
random-walk days are held out.

    python3 bench/demand_days.py        # summary of each day
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rolling import burst_pattern, demand_series, envelope, short_term_shape

from app.engine.model.demo import demo_scenario, trace_profiles

DAY = 1440  # minutes
SIGMA = 0.04
WARMUP_DAYS = 2
EPOCH0_S = 1_715_558_400.0  # 2024-05-13T00:00:00Z, a midnight: minute m of day d is
# at EPOCH0_S + 60 (1440 d + m)

FLASH_START_MIN = 10 * 60
FLASH_RISE_MIN = 10
FLASH_HOLD_END_MIN = 11 * 60
RAMP_RATE = 10.0  # req/s, mean over a day before the ramp
RAMP_START_MIN = 8 * 60
RAMP_MINUTES = 6 * 60
RAMP_GROWTH = 2.5
RAMP_FLASH_START_MIN = 11 * 60 + 30
RAMP_FLASH_HOLD_END_MIN = 12 * 60 + 10
SURGE_START_MIN = 16 * 60 + 40  # the surge day (a tuning day for the surge guard)
SURGE_RISE_MIN = 5
SURGE_HOLD_END_MIN = 17 * 60 + 30
SURGE_FACTOR = 1.5
RW_RATE = 30.0
RW_STEP_SD = 0.02  # per 5 minutes, log scale
RW_NOISE_SD = 0.05
TAIL_MIN = 15  # minutes kept after the test span (the last re-plans look ahead)


@dataclass(frozen=True, slots=True)
class DemandDay:
    """A backtest case: `series` (req/s per minute) starting at EPOCH0_S; the test
    span is minutes [test_start, test_start + test_minutes)."""

    name: str
    query_type: str
    series: np.ndarray
    test_start: int
    test_minutes: int
    held_out: bool
    description: str


def _trace_day(query_type: str, seed: int) -> np.ndarray:
    return demand_series(demo_scenario(), SIGMA, seed)[query_type]


def trace_days(query_type: str, seed: int, warmup_days: int = WARMUP_DAYS) -> np.ndarray:
    """`warmup_days` days, the test day (rolling.py's day for `seed`) and the day
    after, concatenated: (warmup_days + 2) x 1440 minutes."""
    days = [_trace_day(query_type, seed + 1000 * k) for k in range(warmup_days, 0, -1)]
    days += [_trace_day(query_type, seed), _trace_day(query_type, seed + 3000)]
    return np.concatenate(days)


def crowd_multiplier(minutes: int, start: int, rise: int, hold_end: int, factor: float = 2.0
                     ) -> np.ndarray:  # fmt: skip
    """1 outside the crowd, rising linearly to `factor` over `rise` minutes from
    `start`, `factor` until `hold_end`, back to 1 over `rise` minutes."""
    t = np.arange(minutes, dtype=np.float64)
    up = np.clip((t - start + 1) / rise, 0.0, 1.0)
    down = np.clip((t - hold_end + 1) / rise, 0.0, 1.0)
    return 1.0 + (factor - 1.0) * (up - down)


def ramp_type_days(seed: int, days: int) -> np.ndarray:
    """`days` days of the ramp case's base demand (no ramp, no crowd)."""
    pattern = burst_pattern(
        [m["requests"] for m in trace_profiles()["traces"]["code"]["per_minute"]]
    )
    n = days * DAY
    shape = short_term_shape(pattern, 1, np.random.default_rng([seed, 7, 0]), n)
    eps = np.random.default_rng([seed, 7, 1]).standard_normal(n)
    vol = np.exp(SIGMA * eps - 0.5 * SIGMA**2)
    env = np.tile(envelope(3.0, DAY), days)
    out: np.ndarray = RAMP_RATE * env * shape * vol
    return out


def random_walk_days(seed: int, days: int) -> np.ndarray:
    n = days * DAY
    rng = np.random.default_rng([seed, 9])
    walk = np.repeat(np.cumsum(RW_STEP_SD * rng.standard_normal(n // 5)), 5)
    noise = RW_NOISE_SD * rng.standard_normal(n) - RW_NOISE_SD**2 / 2
    return RW_RATE * np.tile(envelope(3.0, DAY), days) * np.exp(walk + noise)


def backtest_days(seed: int = 0, warmup_days: int = WARMUP_DAYS) -> list[DemandDay]:
    w = warmup_days * DAY
    out = []
    for qt in ("code", "conversation"):
        out.append(
            DemandDay(
                qt,
                qt,
                trace_days(qt, seed, warmup_days)[: w + DAY + TAIL_MIN],
                w,
                DAY,
                False,
                f"{qt} day as in bench/rolling.py (seed {seed})",
            )
        )
    conv = trace_days("conversation", seed + 500, warmup_days)[: w + DAY + TAIL_MIN]
    mult = np.ones_like(conv)
    mult[w:] = crowd_multiplier(len(conv) - w, FLASH_START_MIN, FLASH_RISE_MIN, FLASH_HOLD_END_MIN)
    out.append(
        DemandDay(
            "flash-crowd",
            "conversation",
            conv * mult,
            w,
            DAY,
            True,
            "conversation day, x2 within 10 min at 10:00, held to 11:00, back by 11:10",
        )
    )
    base = ramp_type_days(seed + 700, warmup_days + 1)
    t0 = w + RAMP_START_MIN
    base = base[: t0 + RAMP_MINUTES + TAIL_MIN]
    mult = np.ones_like(base)
    k = np.arange(len(base) - t0, dtype=np.float64)
    mult[t0:] = 1.0 + (RAMP_GROWTH - 1.0) * np.clip(k / RAMP_MINUTES, 0.0, 1.0)
    mult[w:] *= crowd_multiplier(
        len(base) - w, RAMP_FLASH_START_MIN, FLASH_RISE_MIN, RAMP_FLASH_HOLD_END_MIN
    )
    out.append(
        DemandDay(
            "ramp-6h",
            "ramp",
            base * mult,
            t0,
            RAMP_MINUTES,
            True,
            "08:00-14:00, x1 -> x2.5 linear ramp, x2 flash crowd at 11:30, one-endpoint code "
            "trace bursts",
        )
    )
    rw = random_walk_days(seed + 900, warmup_days + 2)[: w + DAY + TAIL_MIN]
    out.append(
        DemandDay(
            "random-walk",
            "random-walk",
            rw,
            w,
            DAY,
            True,
            "extra: 30 req/s, envelope 3:1, log level random walk (sd 0.02 / 5 min), "
            "lognormal minute noise sd 0.05",
        )
    )
    base = trace_days("conversation", seed + 300, warmup_days)[: w + DAY + TAIL_MIN]
    mult = np.ones_like(base)
    mult[w:] = crowd_multiplier(
        len(base) - w, SURGE_START_MIN, SURGE_RISE_MIN, SURGE_HOLD_END_MIN, SURGE_FACTOR
    )
    out.append(
        DemandDay(
            "surge",
            "conversation",
            base * mult,
            w,
            DAY,
            False,
            "tuning: conversation day, x1.5 within 5 min at 16:40, held to 17:30, back by 17:35",
        )
    )
    return out


def main() -> None:
    for d in backtest_days():
        test = d.series[d.test_start : d.test_start + d.test_minutes]
        hist = d.series[: d.test_start]
        print(
            f"{d.name:12s} {d.query_type:12s} held_out={d.held_out!s:5s} history {len(hist)} min "
            f"(mean {hist.mean():.1f}), test {d.test_minutes} min: mean {test.mean():.1f} "
            f"min {test.min():.1f} max {test.max():.1f} req/s  | {d.description}"
        )


if __name__ == "__main__":
    main()
