"""The learned method: a structural time-series model (statsmodels
UnobservedComponents) of log demand, calibrated by conformal prediction.

Model. On `bin_min`-minute means of the per-minute rates, y = log(mean + offset)
(offset: 2% of the type's mean rate, at least half a request a minute, so that an
idle bin has a finite log) follows

    y_t = level_t + season_t + irregular_t
    level_{t+1} = level_t + trend_t + eta_t,    trend_{t+1} = trend_t + zeta_t
    season_t = sum of `harmonics` daily harmonics (period 1 day)

— a local linear trend with a smooth time-of-day profile, all multiplicative on
the rate scale. statsmodels estimates the states with its Kalman filter
(`UnobservedComponents`; missing bins are NaN observations, which the filter
skips). The profile has no noise of its own: every filter pass re-estimates it
over the last `history_days`, so it follows a changing profile as the window
slides. Only the ratios of the three noise variances matter to the forecast. By
default they are fixed (level and trend variance = `level_snr_min` and
`trend_snr_min` times the irregular variance, chosen by the backtest); with
`fit="mle"` statsmodels fits them by maximum likelihood and the ratios are
floored there. The floor matters: the likelihood prefers a level that barely
moves on a stationary day, which would take hours to follow a flash crowd.

Calibration (split conformal, on the model's own out-of-sample errors). From
every bin end j in the calibration window the filtered state (data up to j only)
forecasts the bins of the interval the plan would cover, [j + delay, j + delay +
interval]; F_j is the largest of those bin forecasts. Each minute m of that
interval gives a score log(rate_m + offset) - F_j. The forecast is F_now + the
`quantile` of the scores (weighted by age when asked; the point to be covered
counts with weight 1, so n equal scores give the ceil((n + 1) q)-th smallest):
exp(...) - offset is the rate that about q of the coming minutes stay under. The
scores are per-minute, so minute-level bursts widen the quantile by exactly as
much as they happen; one outlier minute is one score among ~1440 a day.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.engine.forecast.quantile import FloatArray, decay_weights, weighted_quantile

if TYPE_CHECKING:
    from statsmodels.tsa.statespace.structural import UnobservedComponents

DAY_MIN = 1440
OFFSET_SHARE = 0.02  # of the mean rate
OFFSET_MIN_RPS = 1.0 / 120.0  # half a request per minute
MIN_SCORES = 50


def _keep_filtered_state_only() -> int:
    """The filter's memory flags: only the filtered states are read, and not
    storing the rest makes the filter ~3x faster."""
    # statsmodels is imported when a model is first fitted, not with the engine: it
    # costs ~120 MB and ~1 s per process, and only the forecaster (in the service's
    # own process) fits; the solver workers import the engine and never do
    from statsmodels.tsa.statespace import kalman_filter as kf

    return int(
        kf.MEMORY_NO_FORECAST
        | kf.MEMORY_NO_PREDICTED_COV
        | kf.MEMORY_NO_FILTERED_COV
        | kf.MEMORY_NO_GAIN
        | kf.MEMORY_NO_SMOOTHING
        | kf.MEMORY_NO_STD_FORECAST
        | kf.MEMORY_NO_LIKELIHOOD
    )


@dataclass(frozen=True, slots=True)
class UcmSpec:
    """The model's structure: bin width and number of daily harmonics (0: no
    time-of-day profile)."""

    bin_min: int
    harmonics: int

    def model(self, endog: FloatArray) -> UnobservedComponents:
        # imported on first use, not with the engine (see _keep_filtered_state_only)
        from statsmodels.tsa.statespace.structural import UnobservedComponents

        seasonal = (
            [{"period": DAY_MIN / self.bin_min, "harmonics": self.harmonics}]
            if self.harmonics > 0
            else None
        )
        return UnobservedComponents(
            endog,
            level="local linear trend",
            freq_seasonal=seasonal,
            stochastic_freq_seasonal=[False] if seasonal else None,
        )


@dataclass(frozen=True, slots=True)
class UcmVariances:
    """Disturbance variances of the model (log scale, per bin); the profile is
    deterministic over the history the filter sees."""

    irregular: float
    level: float
    trend: float

    def vector(self) -> FloatArray:
        return np.asarray([self.irregular, self.level, self.trend], dtype=np.float64)

    def floored(self, level_snr_min: float, trend_snr_min: float) -> UcmVariances:
        return UcmVariances(
            self.irregular,
            max(self.level, level_snr_min * self.irregular),
            max(self.trend, trend_snr_min * self.irregular),
        )


def fixed_variances(level_snr: float, trend_snr: float) -> UcmVariances:
    """Variance ratios without a fit (only ratios matter to the point forecast)."""
    return UcmVariances(1.0, level_snr, trend_snr)


def log_offset(minutes: FloatArray) -> float:
    mean = float(np.nanmean(minutes)) if bool((~np.isnan(minutes)).any()) else 0.0
    return max(OFFSET_SHARE * mean, OFFSET_MIN_RPS)


def log_bins(minutes: FloatArray, bin_min: int, offset: float) -> FloatArray:
    """log(mean rate + offset) of consecutive `bin_min`-minute bins (NaN where no
    minute of the bin is observed); len(minutes) must be a multiple of bin_min."""
    b = minutes.reshape(-1, bin_min)
    n = (~np.isnan(b)).sum(axis=1)
    total = np.nansum(b, axis=1)
    out = np.full(b.shape[0], np.nan)
    ok = n > 0
    out[ok] = np.log(total[ok] / n[ok] + offset)
    return out


def fit_variances(y: FloatArray, spec: UcmSpec) -> UcmVariances | None:
    """Maximum-likelihood variances (deterministic: statsmodels' default start
    values and L-BFGS); None when the fit fails or is not finite."""
    if int((~np.isnan(y)).sum()) < 12:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = spec.model(y).fit(disp=False, maxiter=100)
        p = np.asarray(res.params, dtype=np.float64)
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not bool(np.isfinite(p).all()) or p[0] <= 0.0:
        return None
    return UcmVariances(float(p[0]), float(max(p[1], 0.0)), float(max(p[2], 0.0)))


@dataclass(frozen=True, slots=True)
class ConformalForecast:
    """`log_plan` = `log_point` + `score_quantile`; `scores` counts the calibration
    scores (per-minute out-of-sample errors) behind the quantile."""

    log_plan: float
    log_point: float
    score_quantile: float
    scores: int
    offset: float

    @property
    def rate(self) -> float:
        return max(0.0, math.exp(self.log_plan) - self.offset)


def lead_bins(target_minutes: np.ndarray, bin_min: int) -> np.ndarray:
    """Bins ahead (1 = the bin right after the origin) holding each target minute."""
    return np.asarray(target_minutes // bin_min + 1, dtype=np.int64)


def conformal_forecast(
    minutes: FloatArray,
    spec: UcmSpec,
    variances: UcmVariances,
    target_minutes: np.ndarray,
    quantile: float,
    calib_minutes: float,
    burn_in_minutes: float,
    calib_half_life_minutes: float | None,
) -> ConformalForecast | None:
    """The plan from the per-minute rates `minutes` (the last one ends now; NaN:
    missing; length a multiple of spec.bin_min) for the minutes `target_minutes`
    after now (0 = the minute starting now). None when fewer than MIN_SCORES
    calibration scores exist."""
    B = spec.bin_min
    N = minutes.size
    nb = N // B
    offset = log_offset(minutes)
    with np.errstate(invalid="ignore"):
        logs = np.log(minutes + offset)
    y = log_bins(minutes, B, offset)
    observed = np.flatnonzero(~np.isnan(y))
    if observed.size == 0:
        return None
    first = int(observed[0])  # the filter starts at the first observed bin
    mod = spec.model(y[first:])
    mod.update(variances.vector())
    mod.ssm.set_conserve_memory(_keep_filtered_state_only())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = mod.ssm.filter().filtered_state  # (k, nb - first): data up to each bin end
    Z = np.asarray(mod.ssm["design"], dtype=np.float64).reshape(-1)
    T = np.asarray(mod.ssm["transition"], dtype=np.float64)
    leads = np.unique(lead_bins(target_minutes, B))
    rows = np.stack([Z @ np.linalg.matrix_power(T, int(h)) for h in leads])
    point = (rows @ state).max(axis=0)  # F_j for every origin j >= first
    origin = (np.arange(first, nb) + 1) * B  # minute index at which origin j stands
    idx = origin[:, None] + target_minutes[None, :]
    inside = idx < N
    actual = np.full(idx.shape, np.nan)
    actual[inside] = logs[idx[inside]]
    age = (N - origin).astype(np.float64)
    use = (origin >= first * B + burn_in_minutes) & (age <= calib_minutes + target_minutes.max())
    scores = actual - point[:, None]
    ok = use[:, None] & ~np.isnan(scores)
    n = int(ok.sum())
    if n < MIN_SCORES:
        return None
    w = decay_weights(np.broadcast_to(age[:, None], ok.shape)[ok], calib_half_life_minutes)
    sq = weighted_quantile(scores[ok], w, quantile, extra_weight=1.0)
    f_now = float(point[-1])
    return ConformalForecast(f_now + sq, f_now, sq, n, offset)
