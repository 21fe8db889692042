"""Weighted empirical quantiles (the window quantile and the conformal step)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def weighted_quantile(
    values: FloatArray, weights: FloatArray, q: float, extra_weight: float = 0.0
) -> float:
    """The smallest value v with (weight of values <= v) >= q x (total weight +
    `extra_weight`). `extra_weight` is the weight of the point to be covered, taken
    as +inf (split conformal: with n equal weights and extra_weight 1 this is the
    ceil((n + 1) q)-th smallest value). When even the largest value does not reach
    the level, the largest value. NaN for no values."""
    if values.size == 0:
        return float("nan")
    order = np.argsort(values, kind="stable")
    v = values[order]
    cw = np.cumsum(weights[order])
    target = q * (float(cw[-1]) + extra_weight)
    # a relative tolerance so that equal weights hit exact ranks despite rounding
    k = int(np.searchsorted(cw, target * (1.0 - 1e-12), side="left"))
    return float(v[min(k, v.size - 1)])


def decay_weights(age: FloatArray, half_life: float | None) -> FloatArray:
    """0.5 ** (age / half_life); ones when `half_life` is None."""
    if half_life is None:
        return np.ones_like(age)
    return np.exp2(-age / half_life)
