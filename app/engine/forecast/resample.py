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
from operator import attrgetter

import numpy as np
from numpy.typing import NDArray

from app.engine.errors import InputError
from app.engine.forecast.domain import MINUTE_S, DemandObservation

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

MIN_BIN_COVERAGE = 0.5


@dataclass(frozen=True, slots=True)
class ObservationArrays:
    """One type's observations as arrays sorted by start, one entry per start.
    Entry k is the observation `source[index[k]]`; token means are read from the
    source objects, only where needed (`token_means`)."""

    start_s: FloatArray
    window_s: FloatArray
    requests: FloatArray
    index: IntArray
    source: Sequence[DemandObservation]

    @property
    def n(self) -> int:
        return int(self.start_s.shape[0])

    @property
    def end_s(self) -> FloatArray:
        return self.start_s + self.window_s

    @property
    def rate(self) -> FloatArray:
        return self.requests / self.window_s

    def _subset(self, keep: NDArray[np.bool_]) -> ObservationArrays:
        if bool(keep.all()):
            return self
        return ObservationArrays(
            self.start_s[keep], self.window_s[keep], self.requests[keep], self.index[keep],
            self.source,
        )  # fmt: skip

    def until(self, end_s: float) -> ObservationArrays:
        """The windows that have ended by `end_s` (a window still open is not an
        observation yet)."""
        return self._subset(self.end_s <= end_s)

    def since(self, begin_s: float) -> ObservationArrays:
        """The windows that end after `begin_s`."""
        return self._subset(self.end_s > begin_s)

    def token_means(self, since_s: float) -> tuple[float | None, float | None]:
        """Request-weighted input and output token means over the windows that end
        after `since_s`; the latest known value when none of them has one; None
        when no observation gives one."""
        recent = [self.source[int(i)] for i in self.index[self.end_s > since_s]]
        out: list[float | None] = []
        for name in ("input_tokens_mean", "output_tokens_mean"):
            pairs = [(v, o.requests) for o in recent if (v := getattr(o, name)) is not None]
            weight = sum(w for _, w in pairs)
            if pairs and weight > 0.0:
                out.append(sum(v * w for v, w in pairs) / weight)
                continue
            values = list(map(attrgetter(name), self.source))
            latest = None
            if values.count(None) < len(values):
                for i in self.index[::-1]:
                    if (v := values[int(i)]) is not None:
                        latest = float(v)
                        break
            out.append(latest)
        return out[0], out[1]


def observation_arrays(
    observations: Sequence[DemandObservation], query_type: str | None = None
) -> ObservationArrays:
    """Sorted, deduplicated arrays of `observations`: a later observation with the
    same start replaces an earlier one. With `query_type`, every observation must
    be of that type (InputError otherwise)."""
    n = len(observations)
    if query_type is not None and set(map(attrgetter("query_type"), observations)) - {query_type}:
        i = next(i for i, o in enumerate(observations) if o.query_type != query_type)
        raise InputError(
            f"history[{query_type}][{i}].query_type",
            f"is {observations[i].query_type!r}, filed under {query_type!r}",
        )
    cols = [
        np.fromiter(map(attrgetter(name), observations), np.float64, n)
        for name in ("start_s", "window_s", "requests")
    ]
    index = np.arange(n, dtype=np.int64)
    if n > 1:
        # the last occurrence of each start wins: its first occurrence in reverse order
        _, first = np.unique(cols[0][::-1], return_index=True)  # sorted by start
        index = (n - 1 - first).astype(np.int64)
        cols = [c[index] for c in cols]
    return ObservationArrays(cols[0], cols[1], cols[2], index, observations)


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


def minute_observations(
    rates: Sequence[float] | FloatArray, query_type: str, start_s: float = 0.0
) -> list[DemandObservation]:
    """The other way round: a per-minute rate series (req/s from `start_s`; NaN: a
    minute not observed) as one 60 s observation per observed minute (replays,
    backtests)."""
    return [
        DemandObservation(query_type, start_s + MINUTE_S * m, MINUTE_S, float(r) * MINUTE_S)
        for m, r in enumerate(rates)
        if not np.isnan(r)
    ]
