"""Raw demand observations to per-minute rates.

`observation_arrays` turns one type's observations into sorted numpy arrays, one
entry per window start: a later observation with the same start replaces an
earlier one (in input order), whatever its window length. `resample` spreads the
windows over a grid of equal bins ending at a given time (usually "now", the end of
the latest observed window): a bin's rate is the overlap-weighted mean rate of the
windows that cover it, so windows of any length and phase are accepted (a 300 s
window gives five equal minutes; fifteen-second windows are summed into their
minute; overlapping windows are averaged). A bin less than half covered is missing
(NaN), never zero: only a window that counted zero requests says zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.engine.errors import InputError
from app.engine.forecast.domain import MINUTE_S, DemandObservation

FloatArray = NDArray[np.float64]

MIN_BIN_COVERAGE = 0.5


@dataclass(frozen=True, slots=True)
class ObservationArrays:
    """One type's observations as arrays sorted by start, one entry per start;
    token means are NaN where not given."""

    start_s: FloatArray
    window_s: FloatArray
    requests: FloatArray
    input_tokens_mean: FloatArray
    output_tokens_mean: FloatArray

    @property
    def n(self) -> int:
        return int(self.start_s.shape[0])

    @property
    def end_s(self) -> FloatArray:
        return self.start_s + self.window_s

    @property
    def rate(self) -> FloatArray:
        return self.requests / self.window_s

    def until(self, end_s: float) -> ObservationArrays:
        """The windows that have ended by `end_s` (a window still open is not an
        observation yet)."""
        keep = self.end_s <= end_s
        if bool(keep.all()):
            return self
        return ObservationArrays(
            self.start_s[keep],
            self.window_s[keep],
            self.requests[keep],
            self.input_tokens_mean[keep],
            self.output_tokens_mean[keep],
        )

    def since(self, begin_s: float) -> ObservationArrays:
        """The windows that end after `begin_s`."""
        keep = self.end_s > begin_s
        if bool(keep.all()):
            return self
        return ObservationArrays(
            self.start_s[keep],
            self.window_s[keep],
            self.requests[keep],
            self.input_tokens_mean[keep],
            self.output_tokens_mean[keep],
        )


def observation_arrays(
    observations: Sequence[DemandObservation], query_type: str | None = None
) -> ObservationArrays:
    """Sorted, deduplicated arrays of `observations`. With `query_type`, every
    observation must be of that type (InputError otherwise)."""
    nan = float("nan")
    rows = [
        (
            o.start_s,
            o.window_s,
            o.requests,
            nan if o.input_tokens_mean is None else o.input_tokens_mean,
            nan if o.output_tokens_mean is None else o.output_tokens_mean,
        )
        for o in observations
    ]
    if query_type is not None and {o.query_type for o in observations} - {query_type}:
        i = next(i for i, o in enumerate(observations) if o.query_type != query_type)
        raise InputError(
            f"history[{query_type}][{i}].query_type",
            f"is {observations[i].query_type!r}, filed under {query_type!r}",
        )
    a = np.array(rows, dtype=np.float64).reshape(len(rows), 5)
    if len(rows) > 1:
        # the last occurrence of each start wins: first occurrence in reversed order
        rev = a[::-1]
        _, first = np.unique(rev[:, 0], return_index=True)
        a = rev[first]  # np.unique sorts by start
    return ObservationArrays(
        np.ascontiguousarray(a[:, 0]),
        np.ascontiguousarray(a[:, 1]),
        np.ascontiguousarray(a[:, 2]),
        np.ascontiguousarray(a[:, 3]),
        np.ascontiguousarray(a[:, 4]),
    )


def resample(
    obs: ObservationArrays, end_s: float, bins: int, step_s: float = MINUTE_S
) -> tuple[FloatArray, FloatArray]:
    """Rates (req/s) and covered shares of `bins` bins of `step_s` seconds ending at
    `end_s`: bin k is [end_s - step_s (bins - k), end_s - step_s (bins - k - 1)).
    Rates are NaN where less than half the bin is covered by observations."""
    if bins <= 0:
        return np.zeros(0), np.zeros(0)
    begin = -step_s * bins
    # times relative to end_s keep the integrals small and exact enough
    s = obs.start_s - end_s
    e = s + obs.window_s
    m = (e > begin) & (s < 0.0)
    rates = np.full(bins, np.nan)
    if not bool(m.any()):
        return rates, np.zeros(bins)
    rho = obs.rate[m]
    s = np.clip(s[m], begin, 0.0)
    e = np.clip(e[m], begin, 0.0)
    times = np.concatenate([s, e])
    d_rate = np.concatenate([rho, -rho])
    d_cover = np.concatenate([np.ones_like(rho), -np.ones_like(rho)])
    order = np.argsort(times, kind="stable")
    t = times[order]
    cover = np.cumsum(d_cover[order])
    level = np.where(cover > 0.5, np.cumsum(d_rate[order]), 0.0)
    dt = np.diff(t)
    int_rate = np.concatenate([[0.0], np.cumsum(level[:-1] * dt)])
    int_cover = np.concatenate([[0.0], np.cumsum(cover[:-1] * dt)])
    edges = begin + step_s * np.arange(bins + 1, dtype=np.float64)
    per_rate = np.diff(np.interp(edges, t, int_rate))
    per_cover = np.diff(np.interp(edges, t, int_cover))
    observed = per_cover >= MIN_BIN_COVERAGE * step_s
    rates[observed] = np.maximum(per_rate[observed] / per_cover[observed], 0.0)
    return rates, np.clip(per_cover / step_s, 0.0, 1.0)


def minute_rates(obs: ObservationArrays, end_s: float, minutes: int) -> FloatArray:
    """Per-minute rates over the `minutes` minutes before `end_s` (NaN: missing)."""
    return resample(obs, end_s, minutes, MINUTE_S)[0]
