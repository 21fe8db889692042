"""Frozen inputs and outputs of demand forecasting: observations in, per-type
forecasts out, and the configuration that says how (see the package docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from app.engine.errors import InputError

ForecastMethod = Literal["last", "window_quantile", "ucm_conformal"]
FORECAST_METHODS: tuple[str, ...] = get_args(ForecastMethod)

MINUTE_S = 60.0


@dataclass(frozen=True, slots=True)
class DemandObservation:
    """Requests of one query type counted over one window [start_s, start_s + window_s)
    (epoch seconds, UTC), with the window's mean token counts when known: the shape
    of a gateway log line or a Prometheus `increase()` over `window_s`."""

    query_type: str
    start_s: float
    window_s: float
    requests: float
    input_tokens_mean: float | None = None
    output_tokens_mean: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.start_s):
            raise InputError("start_s", "must be finite")
        if not (math.isfinite(self.window_s) and self.window_s > 0.0):
            raise InputError("window_s", "must be finite and > 0")
        if not (math.isfinite(self.requests) and self.requests >= 0.0):
            raise InputError("requests", "must be finite and >= 0")
        for name in ("input_tokens_mean", "output_tokens_mean"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0.0):
                raise InputError(name, "must be finite and >= 0 when given")

    @property
    def rate(self) -> float:
        """Mean requests/s over the window."""
        return self.requests / self.window_s


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """How to forecast. The plan made from the forecast is in force over
    [now + actuation_delay_s, now + actuation_delay_s + replan_interval_s]; the
    forecast rate is the `quantile` of the per-minute rates over that interval.

    Method parameters (defaults chosen by bench/forecast_backtest.py on the code and
    conversation days; see bench/results/forecast_backtest.md):

    window_quantile — `window_min` minutes of per-minute rates, weighted by age with
    half-life `half_life_min`, their weighted `quantile`, times (1 + `margin`).

    ucm_conformal — a statsmodels UnobservedComponents model (local linear trend,
    `harmonics` daily harmonics, irregular) of log(rate) on `bin_min`-minute
    means over the last `history_days`, its states (level, trend, profile)
    estimated by statsmodels' Kalman filter at every call. Noise variances: with
    `fit="fixed"` (the default) the level and trend variances are `level_snr_min`
    and `trend_snr_min` times the irregular one; with `fit="mle"` they are fitted
    by maximum likelihood (refit every `refit_every_h` hours, staggered by type,
    memoized in a FitCache) and floored at those ratios, so that a flash crowd is
    caught up within an interval or two. Uncertainty by conformal calibration: the
    `quantile` of the model's own out-of-sample errors on per-minute log rates
    over the last `calib_days`, ages weighted with half-life `calib_half_life_h`
    (None: equal weights). Fewer than `min_history_h` hours of history: window
    quantile (noted; 8 h, because a calibration of a few hours takes one catch-up
    after a level shift as the usual error: after 3-4 h at 45 req/s and a step to
    90 the model planned 1.9-2.1x the new level for one to two hours, after 8 h at
    most 1.4x, after a day 1.2x); less than a day plus `season_calib_h` hours: no time-of-day
    profile (noted). The default is "fixed" because on every backtest day the
    fitted variances fall below the floors (the two plan the same) while a fit
    costs 0.3-1 s a type; `refit_every_h` is set for cost, not by the backtest.
    Surge guard: when each of the last `surge_minutes` observed minutes is above
    the model's plan, the level has moved faster than 5-minute bins and a smoothed
    level follow; the plan is then at least their mean grown at the recent rate
    (log-linear slope over `surge_slope_min` minutes, clipped to [0,
    `surge_growth_max`] a minute) to the middle of the last planned minute.
    """

    method: ForecastMethod
    quantile: float = 0.95
    replan_interval_s: float = 300.0
    actuation_delay_s: float = 180.0
    # window_quantile (also the fallback of ucm_conformal for a new type)
    window_min: int = 30
    half_life_min: float = 40.0
    margin: float = 0.01
    # ucm_conformal
    fit: Literal["mle", "fixed"] = "fixed"
    bin_min: int = 5
    harmonics: int = 3
    level_snr_min: float = 0.3
    trend_snr_min: float = 0.0
    history_days: float = 2.0
    refit_every_h: float = 24.0
    calib_days: float = 1.0
    calib_half_life_h: float | None = 6.0
    min_history_h: float = 8.0
    season_calib_h: float = 4.0
    # ucm_conformal's surge guard (see `forecast.surge_rate`; 0 minutes: off); chosen
    # on the code, conversation and surge days (bench/results/surge_tuning/README.md)
    surge_minutes: int = 2
    surge_slope_min: int = 6
    surge_growth_max: float = 0.02
    # ucm_conformal's growth bound (see `forecast.growth_bound`): a guard against the
    # trend's extrapolation, not a forecast; on the study's days the plan reached at
    # most 1.45x the busiest window seen (the ramp, beyond its history)
    bound_factor: float = 2.0
    # token means: request-weighted over the last `token_window_min` minutes
    token_window_min: int = 60

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("method", self.method in FORECAST_METHODS, f"one of {list(FORECAST_METHODS)}"),
            ("quantile", 0.0 < self.quantile < 1.0, "must be in (0, 1)"),
            ("replan_interval_s", self.replan_interval_s > 0.0, "must be > 0"),
            ("actuation_delay_s", self.actuation_delay_s >= 0.0, "must be >= 0"),
            ("window_min", self.window_min >= 1, "must be >= 1"),
            ("half_life_min", self.half_life_min > 0.0, "must be > 0"),
            ("margin", self.margin > -1.0, "must be > -1"),
            ("fit", self.fit in ("mle", "fixed"), "one of ['mle', 'fixed']"),
            ("bin_min", 1 <= self.bin_min <= 60 and 1440 % self.bin_min == 0,
             "must divide 1440 and be <= 60"),
            ("harmonics", 1 <= self.harmonics <= 1440 // (2 * self.bin_min), "must be >= 1 "
             "and below the Nyquist limit of the bins"),
            ("level_snr_min", self.level_snr_min >= 0.0, "must be >= 0"),
            ("trend_snr_min", self.trend_snr_min >= 0.0, "must be >= 0"),
            ("history_days", self.history_days >= 0.5, "must be >= 0.5"),
            ("refit_every_h", self.refit_every_h > 0.0, "must be > 0"),
            ("calib_days", self.calib_days > 0.0, "must be > 0"),
            ("calib_half_life_h", self.calib_half_life_h is None or self.calib_half_life_h > 0,
             "must be > 0 when given"),
            ("min_history_h", self.min_history_h >= 1.0, "must be >= 1"),
            ("season_calib_h", self.season_calib_h >= 1.0, "must be >= 1"),
            ("surge_minutes", 0 <= self.surge_minutes <= 60, "must be in [0, 60]"),
            ("surge_slope_min", 2 <= self.surge_slope_min <= 60, "must be in [2, 60]"),
            ("surge_growth_max", 0.0 <= self.surge_growth_max <= 1.0, "must be in [0, 1]"),
            ("bound_factor", self.bound_factor >= 1.0, "must be >= 1"),
            ("token_window_min", self.token_window_min >= 1, "must be >= 1"),
        ]  # fmt: skip
        for field, ok, message in checks:
            if not ok:
                raise InputError(field, message)
        for field in ("quantile", "replan_interval_s", "actuation_delay_s", "half_life_min",
                      "margin", "level_snr_min", "trend_snr_min", "history_days",
                      "refit_every_h", "calib_days"):  # fmt: skip
            if not math.isfinite(float(getattr(self, field))):
                raise InputError(field, "must be finite")


@dataclass(frozen=True, slots=True)
class TypeForecast:
    """The forecast for one query type. `rate` (req/s) is what the plan must carry
    over the coming interval at `quantile` of per-minute rates; `method` is the
    method that made it (the fallback's name when one was used, `note` says why);
    `points` counts the distinct observation windows used; `last_start_s` and
    `last_rate` are the latest observed window and its rate; the token means are
    request-weighted over the last hour (None when never observed)."""

    query_type: str
    rate: float
    quantile: float
    method: str
    points: int
    last_start_s: float | None
    last_rate: float | None
    input_tokens_mean: float | None
    output_tokens_mean: float | None
    note: str
