"""The two model-free methods: the latest window's rate (what a naive controller
posts) and a decaying-weight window quantile of per-minute rates with a safety
margin (the Kubernetes VPA recommender's recipe: a percentile of an exponentially
decaying histogram, times 1 + margin)."""

from __future__ import annotations

import numpy as np

from app.engine.forecast.domain import ForecastConfig
from app.engine.forecast.quantile import FloatArray, decay_weights, weighted_quantile


def window_quantile_rate(minutes: FloatArray, config: ForecastConfig) -> float | None:
    """The weighted `config.quantile` of the last `config.window_min` per-minute
    rates (NaN: missing, skipped), minute k from the end weighted 0.5 ** (k /
    half_life_min), times (1 + margin). None when no minute of the window is
    observed."""
    w = minutes[-config.window_min :]
    age = (w.size - 1 - np.arange(w.size)).astype(np.float64)
    ok = ~np.isnan(w)
    if not bool(ok.any()):
        return None
    weights = decay_weights(age[ok], config.half_life_min)
    return max(0.0, weighted_quantile(w[ok], weights, config.quantile) * (1.0 + config.margin))
