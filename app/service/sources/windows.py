"""Window arithmetic, pure: which windows are complete, which to fetch next, and
how to name them.

Window k of width w covers [k·w, (k+1)·w) in Unix seconds. Its observation time
is its start; a PromQL `increase(...[w])` covering it is evaluated at its end.
A window is *complete* once `settle_s` has passed after its end (the last scrapes
inside it are in Prometheus by then). Cursors hold the end of the last window
ingested, so the next window to fetch starts there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

# Prometheus refuses range queries of more than 11,000 points per series.
MAX_WINDOWS_PER_QUERY = 1000


def last_complete_end(now_s: float, window_s: int, settle_s: float) -> int:
    """End of the newest complete window at `now_s`."""
    return math.floor((now_s - settle_s) / window_s) * window_s


def align_up(t_s: float, window_s: int) -> int:
    """The first window boundary at or after `t_s`."""
    return math.ceil(t_s / window_s) * window_s


@dataclass(frozen=True, slots=True)
class FetchPlan:
    """Windows to fetch, by their ends: first_end, first_end + w, ..., last_end
    (empty when first_end > last_end); `dropped` complete windows after the cursor
    are older than the catch-up span and will not be fetched."""

    first_end: int
    last_end: int
    window_s: int
    dropped: int = 0

    @property
    def count(self) -> int:
        return max(0, (self.last_end - self.first_end) // self.window_s + 1)

    def chunks(self, max_windows: int = MAX_WINDOWS_PER_QUERY) -> list[tuple[int, int]]:
        """(first_end, last_end) of consecutive spans of at most `max_windows`."""
        out: list[tuple[int, int]] = []
        start = self.first_end
        while start <= self.last_end:
            end = min(self.last_end, start + (max_windows - 1) * self.window_s)
            out.append((start, end))
            start = end + self.window_s
        return out


def plan_fetch(
    now_s: float,
    cursor_s: float | None,
    *,
    window_s: int,
    settle_s: float,
    max_catchup_s: float,
    initial_backfill_s: float,
) -> FetchPlan:
    """Every complete window after the cursor, at most `max_catchup_s` of them back
    from the newest; without a cursor, the last `initial_backfill_s` (at least one
    window). A cursor that is not on a boundary (the window width changed) resumes
    at the next boundary, so no stretch of time is counted twice."""
    w = window_s
    last_end = last_complete_end(now_s, w, settle_s)
    span = max(1, math.floor(max_catchup_s / w))
    oldest_end = last_end - (span - 1) * w
    if cursor_s is None:
        backfill = max(1, min(span, math.floor(initial_backfill_s / w)))
        return FetchPlan(first_end=last_end - (backfill - 1) * w, last_end=last_end, window_s=w)
    first_end = align_up(cursor_s, w) + w
    dropped = 0
    if first_end < oldest_end:
        dropped = (oldest_end - first_end) // w
        first_end = oldest_end
    return FetchPlan(first_end=first_end, last_end=last_end, window_s=w, dropped=dropped)


def rfc3339(t_s: float) -> str:
    """`2026-01-05T10:00:00Z` (milliseconds only when not a whole second)."""
    dt = datetime.fromtimestamp(t_s, tz=UTC)
    if t_s == int(t_s):
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
