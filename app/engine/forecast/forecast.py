"""`forecast_demand`: one forecast per query type from raw observations."""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from app.engine.errors import InputError
from app.engine.forecast.cache import FitCache
from app.engine.forecast.domain import MINUTE_S, DemandObservation, ForecastConfig, TypeForecast
from app.engine.forecast.resample import ObservationArrays, minute_rates, observation_arrays
from app.engine.forecast.ucm import (
    DAY_MIN,
    UcmSpec,
    UcmVariances,
    conformal_forecast,
    fit_variances,
    fixed_variances,
    log_bins,
    log_offset,
)
from app.engine.forecast.window import window_quantile_rate
from app.engine.model.domain import MIN_ARRIVAL_RPS

UcmFitCache = FitCache[UcmVariances | None]
DEFAULT_FIT_CACHE: UcmFitCache = FitCache()
MIN_FIT_S = 3600.0  # a likelihood fit sees at least an hour of data
STALE_S = 300.0  # note when the latest observation ended this long before now


def target_minutes(config: ForecastConfig) -> np.ndarray:
    """Minutes after now (0 = the minute starting now) that overlap the interval the
    plan is in force: [now + actuation_delay_s, now + actuation_delay_s +
    replan_interval_s)."""
    lo = math.floor(config.actuation_delay_s / MINUTE_S + 1e-9)
    hi = math.ceil((config.actuation_delay_s + config.replan_interval_s) / MINUTE_S - 1e-9)
    return np.arange(lo, max(hi, lo + 1), dtype=np.int64)


def forecast_demand(
    history: Mapping[str, Sequence[DemandObservation]],
    config: ForecastConfig,
    now_s: float | None = None,
    *,
    cache: UcmFitCache | None = None,
) -> dict[str, TypeForecast]:
    """The rate each query type's plan must carry over [now + actuation_delay_s,
    now + actuation_delay_s + replan_interval_s] at `config.quantile` of per-minute
    rates, plus token means. `history` maps a query type to its observations (in
    any order; a later observation with the same start replaces an earlier one).
    `now_s` defaults to the end of the latest observed window of any type; windows
    that end after it are ignored. `cache` memoizes likelihood fits (default: a
    process-wide cache); it never changes the result."""
    arrays = {qt: observation_arrays(obs, qt) for qt, obs in history.items()}
    if now_s is None:
        ends = [float(a.end_s.max()) for a in arrays.values() if a.n > 0]
        now_s = max(ends) if ends else 0.0
    elif not math.isfinite(now_s):
        raise InputError("now_s", "must be finite")
    fits = DEFAULT_FIT_CACHE if cache is None else cache
    return {qt: forecast_type(qt, a, config, now_s, fits) for qt, a in arrays.items()}


def forecast_type(
    query_type: str,
    obs: ObservationArrays,
    config: ForecastConfig,
    now_s: float,
    cache: UcmFitCache,
) -> TypeForecast:
    """One type's forecast from its observation arrays (see `forecast_demand`)."""
    obs = obs.until(now_s)
    if obs.n == 0:
        return TypeForecast(query_type, 0.0, config.quantile, config.method, 0, None, None,
                            None, None, "no observations: rate 0")  # fmt: skip
    last_start = float(obs.start_s[-1])
    last_rate = float(obs.rate[-1])
    tokens = obs.token_means(now_s - config.token_window_min * MINUTE_S)
    stale_s = now_s - float(obs.end_s.max())
    stale = (
        f"latest observation ended {stale_s / 60:.0f} min before now" if stale_s >= STALE_S else ""
    )

    def result(rate: float, method: str, points: int, note: str) -> TypeForecast:
        note = "; ".join(x for x in (note, stale) if x)
        rate = rate if rate >= MIN_ARRIVAL_RPS else 0.0  # what a plan would make of it
        return TypeForecast(query_type, rate, config.quantile, method, points, last_start,
                            last_rate, tokens[0], tokens[1], note)  # fmt: skip

    if config.method == "last":
        return result(last_rate, "last", 1, "")
    if config.method == "window_quantile":
        rate, points, note = _window(obs, config, now_s, last_rate)
        return result(rate, "window_quantile", points, note)
    return _ucm(query_type, obs, config, now_s, cache, last_rate, result)


def _window(
    obs: ObservationArrays, config: ForecastConfig, now_s: float, last_rate: float
) -> tuple[float, int, str]:
    minutes = minute_rates(obs, now_s, config.window_min)
    points = _points(obs, now_s - config.window_min * MINUTE_S)
    rate = window_quantile_rate(minutes, config)
    if rate is None:
        return last_rate, 1, f"no observation in the last {config.window_min} min: latest rate"
    return rate, points, ""


def _ucm(
    query_type: str,
    obs: ObservationArrays,
    config: ForecastConfig,
    now_s: float,
    cache: UcmFitCache,
    last_rate: float,
    result: Callable[[float, str, int, str], TypeForecast],
) -> TypeForecast:
    B = config.bin_min
    horizon_s = config.history_days * DAY_MIN * MINUTE_S
    used = obs.since(now_s - horizon_s)
    span_s = now_s - float(used.start_s[0]) if used.n else 0.0
    points = used.n

    def fallback(why: str) -> TypeForecast:
        rate, _, note = _window(obs, config, now_s, last_rate)
        return result(rate, "window_quantile", points, "; ".join(x for x in (why, note) if x))

    if span_s < config.min_history_h * 3600.0:
        return fallback(
            f"new type: {points} points over {span_s / 60:.0f} min "
            f"(< {config.min_history_h:g} h), window quantile"
        )
    seasonal = span_s >= (DAY_MIN * MINUTE_S) + config.season_calib_h * 3600.0
    spec = UcmSpec(B, config.harmonics if seasonal else 0)
    notes = []
    if not seasonal:
        notes.append(
            f"no time-of-day profile: {span_s / 3600:.1f} h of history "
            f"(< 1 day + {config.season_calib_h:g} h), level and trend only"
        )
    n_min = min(int(horizon_s // MINUTE_S), math.ceil(span_s / MINUTE_S))
    n_min = -(-n_min // B) * B
    minutes = minute_rates(used, now_s, n_min)
    if config.fit == "fixed":
        variances = fixed_variances(config.level_snr_min, config.trend_snr_min)
    else:
        fitted = _fitted_variances(query_type, obs, spec, config, now_s, cache)
        if fitted is None:
            notes.append("likelihood fit failed: fixed variance ratios")
            variances = fixed_variances(config.level_snr_min, config.trend_snr_min)
        else:
            variances = fitted.floored(config.level_snr_min, config.trend_snr_min)
    burn_in = DAY_MIN if seasonal else 60
    fc = conformal_forecast(
        minutes,
        spec,
        variances,
        target_minutes(config),
        config.quantile,
        config.calib_days * DAY_MIN,
        burn_in,
        None if config.calib_half_life_h is None else config.calib_half_life_h * 60.0,
    )
    if fc is None:
        return fallback("too few calibration points for the model, window quantile")
    rate, surge = surge_rate(used, config, now_s, fc.rate)
    rate, bounded = growth_bound(used, config, now_s, rate)
    notes += [x for x in (surge, bounded) if x]
    return result(rate, "ucm_conformal", points, "; ".join(notes))


def growth_bound(
    obs: ObservationArrays, config: ForecastConfig, now_s: float, planned: float
) -> tuple[float, str]:
    """`planned`, at most `bound_factor` times the busiest window the model has
    seen (`obs`: its history) grown at `surge_growth_max` a minute from the latest
    observed window to the end of the last planned minute. A note says when the
    bound applies.

    The model extrapolates its log-scale trend: after a step from idle to busy in a
    young history it planned 25-150x the rate ever observed (1,534 req/s for a type
    at 10 req/s), and while a type went unobserved it kept growing. The bound is the
    surge guard's own ceiling (its level is a mean of observed minutes, its growth
    at most `surge_growth_max`, over the same lead), so it never lowers the guard.
    It is a guard against the extrapolation, not a forecast, hence the factor: on
    bursty demand the conformal quantile rightly plans above anything seen (the
    held-out ramp day, rising beyond its history with bursts of 3-5x, planned up
    to 1.45x its busiest window), and a bound at 1x, from the last hour or the
    whole history, cut those plans: 0.73% of its requests violating became 1.29%
    and 1.12%."""
    seen = float(obs.rate.max())
    since_last_min = max(0.0, (now_s - float(obs.end_s.max())) / MINUTE_S)
    lead = since_last_min + 0.5 + float(target_minutes(config)[-1]) + 1.0
    bound = config.bound_factor * seen * math.exp(config.surge_growth_max * lead)
    if planned <= bound:
        return planned, ""
    return bound, (
        f"bounded: the model's {planned:.3g} req/s is above {config.bound_factor:g}x the "
        f"busiest window it has seen ({seen:.3g} req/s) grown "
        f"{100 * config.surge_growth_max:g}%/min for {lead:.1f} min"
    )


def surge_rate(
    obs: ObservationArrays, config: ForecastConfig, now_s: float, planned: float
) -> tuple[float, str]:
    """The surge guard of ucm_conformal: `planned`, or, when each of the last
    `surge_minutes` observed minutes is above it, at least their mean grown at the
    recent rate until the middle of the last planned minute (a note says so).

    A model on 5-minute bins with a smoothed level follows a step late: on a x2
    flash crowd the plan lagged the demand by 5-7 minutes, on top of the
    actuation delay. Demand already above what the plan is to carry later is the
    earliest sign the model has fallen behind. The growth is the least-squares
    slope of log rates over the last `surge_slope_min` minutes, clipped to [0,
    `surge_growth_max`] per minute, so a flat surge plans its level and noise
    cannot plan a fall."""
    k = config.surge_minutes
    if k == 0:
        return planned, ""
    recent = minute_rates(obs, now_s, max(k, config.surge_slope_min))
    last = recent[-k:]
    if np.isnan(last).any() or not bool((last > planned).all()):
        return planned, ""
    t = np.arange(recent.size, dtype=np.float64)
    ok = ~np.isnan(recent) & (recent > 0.0)
    slope = 0.0
    if int(ok.sum()) >= 3:
        slope = float(np.polyfit(t[ok], np.log(recent[ok]), 1)[0])
    slope = min(max(slope, 0.0), config.surge_growth_max)
    level = float(last.mean())
    lead = float(target_minutes(config)[-1]) + 0.5 + k / 2.0  # from the last minutes' middle
    rate = level * math.exp(slope * lead)
    if rate <= planned:
        return planned, ""
    note = (
        f"surge: the last {k} min above the model's {planned:.3g} req/s; "
        f"{level:.3g} req/s growing {100 * slope:.1f}%/min"
    )
    return rate, note


def fit_window(
    query_type: str, first_start_s: float, now_s: float, refit_every_h: float, horizon_s: float
) -> tuple[float, float]:
    """The span [begin, anchor) of data the likelihood fit in use sees. The anchor is
    the latest point of the type's refit grid (every `refit_every_h` hours,
    phase-shifted per type so that types refit at different re-plans); the span
    starts `horizon_s` before it, or at the first grid point after the type's
    first observation when that is later (so a caller keeping a sliding window of
    history does not change the fit's data, and so its cache key, at every call).
    The span must cover a full refit period (or the horizon); a young type uses a
    3-hour, then an hourly grid (at least MIN_FIT_S of data); failing that, all its
    data up to now."""
    step = 300.0
    grids = ((refit_every_h * 3600.0, True), (3 * 3600.0, False), (3600.0, False))
    for every_s, full in grids:
        slots = max(1, int(every_s // step))
        phase = (zlib.crc32(query_type.encode()) % slots) * step
        anchor = math.floor((now_s - phase) / every_s) * every_s + phase
        first = math.ceil((first_start_s - phase) / every_s) * every_s + phase
        begin = max(anchor - horizon_s, first)
        need = min(every_s, horizon_s) if full else MIN_FIT_S
        if anchor - begin >= max(need, MIN_FIT_S):
            return begin, anchor
    return first_start_s, now_s


def _fitted_variances(
    query_type: str,
    obs: ObservationArrays,
    spec: UcmSpec,
    config: ForecastConfig,
    now_s: float,
    cache: UcmFitCache,
) -> UcmVariances | None:
    horizon_s = config.history_days * DAY_MIN * MINUTE_S
    begin, anchor = fit_window(
        query_type, float(obs.start_s[0]), now_s, config.refit_every_h, horizon_s
    )
    data = obs.until(anchor).since(begin)
    if data.n == 0:
        return None
    digest = hashlib.blake2b(digest_size=16)
    for a in (data.start_s, data.window_s, data.requests):
        digest.update(a.tobytes())
    key = (query_type, begin, anchor, spec, digest.hexdigest())

    def fit() -> UcmVariances | None:
        n_min = -(-math.ceil((anchor - begin) / MINUTE_S) // spec.bin_min) * spec.bin_min
        minutes = minute_rates(data, anchor, n_min)
        y = log_bins(minutes, spec.bin_min, log_offset(minutes))
        observed = np.flatnonzero(~np.isnan(y))
        return fit_variances(y[int(observed[0]) :], spec) if observed.size else None

    return cache.get_or_make(key, fit)


def _points(obs: ObservationArrays, since_s: float) -> int:
    return int((obs.end_s > since_s).sum())
