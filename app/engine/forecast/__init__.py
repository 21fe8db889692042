"""Demand forecasting (SPEC §4.1, issue #11): from raw per-type demand observations
to the rate each type's plan must carry.

Observations are request counts over windows, `DemandObservation(query_type,
start_s, window_s, requests, input_tokens_mean?, output_tokens_mean?)`, usually
60 s windows but any length. Time is the windows' own time, never the wall clock:
"now" is the end of the latest observed window (or a given `now_s`), so a replay
runs as fast as the machine allows. The plan made from a forecast is in force over
[now + actuation_delay_s, now + actuation_delay_s + replan_interval_s] (180 s and
300 s by default: new replicas take minutes to load); the forecast rate is the
`quantile` (0.95 by default) of the per-minute rates over that interval: about 95%
of the minutes the plan is in force stay at or below it.

Methods (`ForecastConfig.method`):

* ``last`` — the latest window's rate: what a naive controller posts.
* ``window_quantile`` — a decaying-weight quantile of the recent per-minute rates
  times (1 + margin), as Kubernetes' VPA recommends from a decaying histogram.
* ``ucm_conformal`` — learned: a statsmodels UnobservedComponents model (level,
  trend, a smooth time-of-day profile of a few daily harmonics) of log demand,
  its states estimated by statsmodels' Kalman filter from the history, with its
  uncertainty calibrated by conformal prediction on its own past per-minute
  errors (see `app.engine.forecast.ucm`). Noise variance ratios are fixed (chosen
  by the backtest) or, with ``fit="mle"``, fitted by maximum likelihood.

The defaults are chosen by bench/forecast_backtest.py (results in
bench/results/forecast_backtest.md).

How the awkward cases are handled:

* **Ingestion.** Observations may come in any order; a later observation with the
  same type and start replaces an earlier one. Windows are spread over a minute
  grid ending at now by overlap (a 300 s window makes five equal minutes, 15 s
  windows add up to their minute); windows that end after now are ignored.
* **Gaps.** A minute less than half covered by observations is missing (NaN), not
  zero: only a window that counted zero requests says zero. The window quantile
  skips missing minutes; the model treats missing bins as missing observations
  (the Kalman filter predicts through them) and scores no missing minute. A type
  whose latest observation ended 5 min or more before now is still forecast (the
  model extrapolates); the note says how stale it is. Windows longer than a
  minute hide the minute-level bursts inside them, so quantiles of such minutes
  are lower than the true per-minute quantile: prefer 60 s windows.
* **New type.** With less than `min_history_h` (8 h) of history the learned
  method falls back to the window quantile and says so in the note ("new type:
  3 points over 3 min (< 8 h), window quantile"): its conformal quantile needs
  hours of its own errors, or one level shift's catch-up reads as the usual error
  and doubles the plan for an hour or two; with one observation that is its
  rate times (1 + margin). No observation at all: rate 0, noted.
* **Short history.** The time-of-day profile needs a full day (plus
  `season_calib_h` hours to calibrate on out-of-sample errors after it); with
  less the model has level and trend only, noted.
* **Bursts.** The quantile is of per-minute rates, so minute-level spikes are
  carried by it: the conformal scores are per-minute errors. A single outlier
  minute is one score among ~1440 a day (it barely moves the 95th percentile)
  and enters the model's level as one 5-minute bin, which the filter forgets in
  a few bins: it cannot inflate the plan for more than a few re-plans.
* **Flash crowd** (demand x2 within 10 minutes). The window quantile rises as soon
  as the new minutes carry more than 1 - q of the decayed weight. The model's
  level variance is floored (`level_snr_min`) so that its level catches a step
  within an interval or two instead of the hours a stationary-day likelihood fit
  would take; the errors of the catch-up widen the calibration quantile for the
  following day only (calibration window `calib_days`).

Cost. Each call resamples each type's observations (numpy) and, for the model,
runs statsmodels' Kalman filter once over the last `history_days` of 5-minute
bins with known variances (1-3 ms a type; pass no more history than
`history_days` plus an hour: ingestion is linear in what is passed). With
``fit="mle"`` the likelihood fits are the expensive part (0.3-1 s a type): each
type refits only when its refit grid point passes (every `refit_every_h` hours,
staggered by type), memoized in a `FitCache` keyed by the data the fit used, so
results never depend on the cache; a new type, or one switching to the daily
profile after a day, refits at once. Filters and fits are deterministic.
"""

from app.engine.forecast.backtest import BacktestResult, backtest
from app.engine.forecast.cache import FitCache
from app.engine.forecast.domain import (
    FORECAST_METHODS,
    DemandObservation,
    ForecastConfig,
    ForecastMethod,
    TypeForecast,
)
from app.engine.forecast.forecast import (
    DEFAULT_FIT_CACHE,
    UcmFitCache,
    forecast_demand,
    forecast_type,
    target_minutes,
)
from app.engine.forecast.resample import (
    ObservationArrays,
    minute_observations,
    minute_rates,
    observation_arrays,
    resample,
)

__all__ = [
    "DEFAULT_FIT_CACHE",
    "FORECAST_METHODS",
    "BacktestResult",
    "DemandObservation",
    "FitCache",
    "ForecastConfig",
    "ForecastMethod",
    "ObservationArrays",
    "TypeForecast",
    "UcmFitCache",
    "backtest",
    "forecast_demand",
    "forecast_type",
    "minute_observations",
    "minute_rates",
    "observation_arrays",
    "resample",
    "target_minutes",
]
