"""Observed demand -> planned demand: the service's own forecaster (SPEC §4.1).

`DemandLoop` ingests demand observations (request counts over windows per query
type, from `POST /v1/observations/demand` or a Prometheus source), keeps them
durable in SQLite and recent ones in memory, forecasts per type with the policy's
method (`app.engine.forecast` through the facade) and writes the planned demand
into the cluster spec — which bumps the generation and re-plans — when:

* a type's planned rate (or token mean) moves outside `policy.replan_deadband`
  of the rate the spec carries: at once;
* `policy.replan_interval_s` has passed since the last forecast-driven update:
  every type's forecast is written, small moves included.

Time is the observations' own (the end of the newest window), never the wall
clock, so a replay runs as fast as the machine allows — of past days, or of
simulated ones. The wall clock only bounds it: a window cannot have been counted
before it ended, so one that ends more than `observation_max_future_s` after the
clock (a mistyped year) is refused (422) rather than moving the data time years
ahead, where every real window after it would be older than what is kept. A
window whose end is not a representable time (past 9999-12-31) is refused too.

Scale-downs wait (HPA's stabilization window): the planned rate of a type is the
highest forecast of the last `policy.scale_down_stabilization_s`, so a dip does
not shed capacity a returning burst needs; rises are taken at once.

Types without observations keep the rate their spec declares. Every update that
is applied is recorded (`forecasts` table): `GET /v1/forecast` reports, per type,
the share of observed windows that ran above the rate in force when they ran
(the forecast's coverage so far, against its target quantile).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.engine.api import DemandObservation, ForecastConfig, TypeForecast, forecast_demand
from app.service.errors import InvalidInput
from app.service.metrics import Metrics
from app.service.schemas.observations import MAX_WINDOW_S
from app.service.settings import Settings
from app.service.state import Attached, ClusterSnapshot, ControlPlane
from app.service.store import ForecastRow, Store

log = logging.getLogger("llm_allocator.service")

DAY_S = 86_400.0
# What the forecaster needs in memory: its history plus calibration, with room.
MEMORY_S = 5 * DAY_S


@dataclass(frozen=True, slots=True)
class Ingested:
    """The answer to an ingestion: how many windows, how many replaced an earlier
    one, and whether the planned demand changed (a new generation)."""

    accepted: int
    replaced: int
    changed: bool
    generation: int
    data_time_s: float | None
    ignored: int = 0  # windows older than the service keeps: not stored
    ignored_reason: str | None = None


@dataclass(slots=True)
class _TypeState:
    """One query type's observations in memory and its recent forecasts."""

    windows: dict[float, DemandObservation] = field(default_factory=dict)
    recent: deque[tuple[float, float]] = field(default_factory=deque)  # (made_at, rate)
    last: TypeForecast | None = None


def to_epoch(start: datetime) -> float:
    return start.astimezone(UTC).timestamp()


def from_epoch(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def representable(t: float) -> bool:
    """Whether epoch seconds `t` is a datetime (years 1-9999): what `from_epoch`
    needs of every time the service reports."""
    try:
        datetime.fromtimestamp(t, UTC)
    except (OverflowError, ValueError, OSError):
        return False
    return True


def window_problem(r: DemandObservation, clock_s: float, max_future_s: float) -> str | None:
    """Why window `r` cannot be right, or None: its end (`start + window_s`, the
    data time it would set) is not a representable time, or lies more than
    `max_future_s` after the wall clock `clock_s` (it cannot have been counted)."""
    end = r.start_s + r.window_s
    if not (representable(r.start_s) and representable(end)):
        return "the window (start + window_s) ends after 9999-12-31T23:59:59Z"
    if end > clock_s + max_future_s:
        return (
            f"the window ends at {from_epoch(end)}, more than observation_max_future_s = "
            f"{max_future_s:g} s after the service's clock ({from_epoch(clock_s)}); a window "
            "is counted once it has ended"
        )
    return None


# Windows that overlap by at most this are adjacent (starts and ends are parsed
# from RFC 3339 with up to microseconds and summed in floating point).
OVERLAP_TOLERANCE_S = 1e-3


def overlaps(
    items: Sequence[tuple[int, DemandObservation]],
    stored: Sequence[DemandObservation],
    field_prefix: str = "observations",
) -> dict[int, str]:
    """Item index -> why it cannot be stored: it overlaps a window of its type with
    a different start, stored (and not replaced by this batch) or another item.

    Refused rather than counted twice: a 1 s window inside a stored 60 s one (or a
    5-minute window over five 1-minute ones) would add its requests to the same
    stretch of time again and raise the planned rate. The same type and start
    replaces (a corrected count), as before; the Prometheus source's windows are
    aligned to multiples of its `window_s` and resume at a boundary after a change
    of width, so they never overlap one another. A sweep per type in start order:
    a window overlaps an earlier one iff it starts before the furthest end so far."""
    last = {(r.query_type, r.start_s): (k, r) for k, r in items}  # the last of a start counts
    by_type: dict[str, list[tuple[int | None, DemandObservation]]] = {}
    for r in stored:
        if (r.query_type, r.start_s) not in last:
            by_type.setdefault(r.query_type, []).append((None, r))
    for item, r in last.values():
        by_type.setdefault(r.query_type, []).append((item, r))
    out: dict[int, str] = {}
    for windows in by_type.values():
        windows.sort(key=lambda w: w[1].start_s)
        reach: tuple[int | None, DemandObservation] | None = None  # the window ending last
        for k, r in windows:
            if reach is not None:
                j, o = reach
                if o.start_s + o.window_s > r.start_s + OVERLAP_TOLERANCE_S:
                    if k is not None:
                        out.setdefault(k, _overlap_message(o, j, field_prefix))
                    elif j is not None:
                        out.setdefault(j, _overlap_message(r, None, field_prefix))
            if reach is None or r.start_s + r.window_s > reach[1].start_s + reach[1].window_s:
                reach = (k, r)
    return out


def _overlap_message(other: DemandObservation, item: int | None, field_prefix: str) -> str:
    where = "a stored window" if item is None else f"{field_prefix}[{item}]"
    return (
        f"overlaps {where} of {other.query_type!r} ({from_epoch(other.start_s)}, "
        f"{other.window_s:g} s): windows of one type must not overlap (their requests would "
        "count twice); the same start replaces"
    )


# The policy fields that decide the planned demand (a change re-forecasts at once).
FORECAST_FIELDS = (
    "forecast",
    "demand_quantile",
    "replan_interval_s",
    "actuation_delay_s",
    "replan_deadband",
    "scale_down_stabilization_s",
)


class DemandLoop(Attached):
    def __init__(
        self, cp: ControlPlane, store: Store, settings: Settings, metrics: Metrics
    ) -> None:
        super().__init__(cp, store, settings, metrics)
        self._types: dict[str, _TypeState] = {}
        self._data_now: float | None = None
        self._last_update_s: float | None = None  # data time of the last applied update

    # -- start-up ------------------------------------------------------------------

    async def load(self) -> None:
        """Recent observations from the database (after a restart the forecaster
        goes on where it was). Windows that ingestion now refuses (`window_problem`:
        stored before it did) are skipped and logged, and so are forecasts made at
        such a data time: a database written with a window in year 9999 or 2100
        goes on from the windows it has besides (that one stays in the file, unused)."""
        clock_s, max_future_s = time.time(), self.settings.observation_max_future_s
        stored = await self.store.call(self.store.demand_since, 0.0)
        problems = [window_problem(r, clock_s, max_future_s) for r in stored]
        rows = [r for r, why in zip(stored, problems, strict=True) if why is None]
        if len(rows) < len(stored):
            r, why = next((r, why) for r, why in zip(stored, problems, strict=True) if why)
            log.warning(
                "%d stored demand window(s) skipped, e.g. %s at start_s=%r: %s",
                len(stored) - len(rows), r.query_type, r.start_s, why,
            )  # fmt: skip
        if rows:
            keep_from = self._keep_from(max(r.start_s + r.window_s for r in rows))
            rows = [r for r in rows if r.start_s >= keep_from]
        self._remember(rows)
        applied = await self.store.call(self.store.forecasts_since, 0.0)
        made = [r.made_at_s for r in applied if r.made_at_s <= clock_s + max_future_s]
        if len(made) < len(applied):
            log.warning(
                "%d stored forecast(s) made after the clock (+ observation_max_future_s) skipped",
                len(applied) - len(made),
            )
        if made:
            self._last_update_s = max(made)

    # -- ingestion -----------------------------------------------------------------

    async def ingest(
        self,
        rows: Sequence[DemandObservation],
        field_prefix: str = "observations",
        *,
        skip_overlaps: bool = False,
    ) -> Ingested:
        """Store windows (all or nothing: an unknown type, a window that cannot be
        right (`window_problem`) or one that `overlaps` another of its type is a 422
        naming its item and nothing is stored), then forecast and update the
        planned demand if needed. `skip_overlaps` (the Prometheus source): an
        overlapping window is ignored (counted, with the reason) instead, so that
        windows posted by hand do not hold up the source's chunk at every poll."""
        known = {q["id"] for q in self.cp.cluster.spec["query_types"]}
        clock_s, max_future_s = time.time(), self.settings.observation_max_future_s
        bad: list[tuple[str, str]] = []
        for k, r in enumerate(rows):
            if r.query_type not in known:
                bad.append(
                    (f"{field_prefix}[{k}].query_type", f"unknown query type {r.query_type!r}")
                )
            why = window_problem(r, clock_s, max_future_s)
            if why is not None:
                bad.append((f"{field_prefix}[{k}].start", why))
        if bad:
            raise InvalidInput(bad)
        async with self._lock:
            keep, reason = self._too_old(rows)
            found = await self._overlaps([(k, rows[k]) for k in keep], field_prefix)
            if found and not skip_overlaps:
                raise InvalidInput([(f"{field_prefix}[{k}]", why) for k, why in found.items()])
            if found:
                keep = [k for k in keep if k not in found]
                k, why = next(iter(found.items()))
                also = f"{len(found)} window(s) overlap others of their type, e.g. [{k}] {why}"
                reason = f"{reason}; {also}" if reason else also
            kept = [rows[k] for k in keep]
            replaced, changed = 0, False
            if kept:
                replaced = await self.store.call(self.store.upsert_demand, kept)
                self._remember(kept)
                self.metrics.observations.labels("demand").inc(len(kept))
                await self._prune()
                changed = await self._update_plan_demand()
        ignored = len(rows) - len(kept)
        if ignored:  # overlaps are a conflict between sources: worth a warning
            log.log(
                logging.WARNING if found else logging.INFO, "demand windows ignored: %s", reason
            )
        return Ingested(
            len(kept),
            replaced,
            changed,
            self.cp.cluster.generation,
            self._data_now,
            ignored,
            reason,
        )

    async def _overlaps(
        self, items: Sequence[tuple[int, DemandObservation]], field_prefix: str
    ) -> dict[int, str]:
        """`overlaps` of the items against the stored windows near them, by index
        (in order)."""
        spans: dict[str, tuple[float, float]] = {}
        for _, r in items:
            lo, hi = spans.get(r.query_type, (r.start_s, r.start_s + r.window_s))
            spans[r.query_type] = (min(lo, r.start_s), max(hi, r.start_s + r.window_s))
        stored = await self.store.call(self.store.demand_overlapping, spans, MAX_WINDOW_S)
        return dict(sorted(overlaps(items, stored, field_prefix).items()))

    def _keep_from(self, data_now: float) -> float:
        """The oldest window start the service keeps: the forecaster (and the
        coverage) read the last `MEMORY_S` of windows, storage the last
        `observation_retention_s`; a window older than either has no effect."""
        return data_now - min(MEMORY_S, self.settings.observation_retention_s)

    def _too_old(self, rows: Sequence[DemandObservation]) -> tuple[list[int], str | None]:
        """The indices of the windows to store, and why the others are ignored:
        those that start before `_keep_from` the data time they arrive at. Storing
        them would have no effect (they were pruned at once), yet the answer
        counted them as accepted; now the answer says so."""
        ends = [r.start_s + r.window_s for r in rows]
        if self._data_now is not None:
            ends.append(self._data_now)
        if not ends:
            return [], None
        data_now = max(ends)
        keep_from = self._keep_from(data_now)
        keep = [k for k, r in enumerate(rows) if r.start_s >= keep_from]
        ignored = len(rows) - len(keep)
        if not ignored:
            return keep, None
        reason = (
            f"{ignored} window(s) start before {from_epoch(keep_from)}, older than the service "
            f"keeps (the last {data_now - keep_from:g} s before the data time "
            f"{from_epoch(data_now)}: observation_retention_s, at most {MEMORY_S:g} s for the "
            "forecaster); they were not stored and have no effect"
        )
        return keep, reason

    def _remember(self, rows: Sequence[DemandObservation]) -> None:
        for r in rows:
            self._types.setdefault(r.query_type, _TypeState()).windows[r.start_s] = r
            end = r.start_s + r.window_s
            self._data_now = end if self._data_now is None else max(self._data_now, end)

    async def _prune(self) -> None:
        """Bounded memory and storage, by observation time."""
        if self._data_now is None:
            return
        horizon = self._keep_from(self._data_now)
        for st in self._types.values():
            for start in [s for s in st.windows if s < horizon]:
                del st.windows[start]
        keep_from = self._data_now - self.settings.observation_retention_s
        await self.store.call(self.store.prune_demand, keep_from)
        await self.store.call(self.store.prune_forecasts, keep_from)

    # -- forecast -> planned demand ------------------------------------------------------

    def config(self, spec: dict[str, Any]) -> ForecastConfig:
        p = spec["policy"]
        return ForecastConfig(
            method=p["forecast"],
            quantile=p["demand_quantile"],
            replan_interval_s=p["replan_interval_s"],
            actuation_delay_s=p["actuation_delay_s"],
        )

    async def policy_changed(self, before: dict[str, Any], after: dict[str, Any]) -> bool:
        """A spec change that moved a field of how demand is planned (`FORECAST_FIELDS`):
        forecast again now, from the windows held and at the same data time, and
        write the result (a replay that has ended, or a stalled source, would
        otherwise keep the old policy's rates, and GET /v1/forecast show the old
        method per type). The stabilization window starts afresh: it holds capacity
        through a dip of demand, not through a change of policy, so a lower quantile
        takes effect at once. Returns whether the spec changed."""
        if all(before.get(k) == after.get(k) for k in FORECAST_FIELDS):
            return False
        async with self._lock:
            for st in self._types.values():
                st.recent.clear()
            return await self._update_plan_demand(force=True)

    async def _update_plan_demand(self, force: bool = False) -> bool:
        """Forecast every observed type; write the planned demand into the spec when
        a type leaves the dead band or an interval has passed (or `force`). Returns
        whether the spec changed."""
        now = self._data_now
        cluster = self.cp.cluster
        # Only the spec's types are forecast: a type removed from the spec keeps its
        # stored windows (it may come back) but has no rate to plan (forecasting it
        # made every later post a 500 until the type was added back).
        in_spec = {q["id"] for q in cluster.spec["query_types"]}
        observed = {q: st for q, st in self._types.items() if st.windows and q in in_spec}
        if now is None or not observed:
            return False
        config = self.config(cluster.spec)
        # What the forecaster reads: its model's history and calibration days, with
        # two hours to spare (reading more only costs time).
        since = now - (config.history_days + config.calib_days) * DAY_S - 7200.0
        history = {
            q: [o for s, o in st.windows.items() if s >= since] for q, st in observed.items()
        }
        forecasts = await asyncio.to_thread(forecast_demand, history, config, now)
        policy = cluster.spec["policy"]
        planned: dict[str, TypeForecast] = {}
        for qid, fc in forecasts.items():
            st = self._types[qid]
            st.last = fc
            st.recent.append((now, fc.rate))
            while st.recent and st.recent[0][0] < now - policy["scale_down_stabilization_s"]:
                st.recent.popleft()
            planned[qid] = fc
        interval_due = (
            force
            or self._last_update_s is None
            or now - self._last_update_s >= policy["replan_interval_s"]
        )
        patches = self._patches(cluster, planned, interval_due)
        if not patches:
            return False
        snap, changed = await self.cp.update_spec(
            lambda cur: _merge(cur, patches), source="forecast"
        )
        if changed:
            self._last_update_s = now
            rows = [
                ForecastRow(
                    qid,
                    now,
                    now + policy["actuation_delay_s"],
                    now + policy["actuation_delay_s"] + policy["replan_interval_s"],
                    p["arrival_rate"],
                    planned[qid].method,
                )
                for qid, p in patches.items()
            ]
            await self.store.call(self.store.record_forecasts, rows)
            log.info(
                "planned demand updated from observations (generation %d): %s",
                snap.generation,
                ", ".join(f"{q} {p['arrival_rate']:.3g}/s" for q, p in patches.items()),
            )
        return changed

    def _patches(
        self,
        cluster: ClusterSnapshot,
        planned: dict[str, TypeForecast],
        interval_due: bool,
    ) -> dict[str, dict[str, float]]:
        """Per type, the fields to write: its stabilized rate and token means, when
        outside the dead band (or on every type when an interval is due)."""
        band = cluster.spec["policy"]["replan_deadband"]
        current = {q["id"]: q for q in cluster.spec["query_types"]}
        patches: dict[str, dict[str, float]] = {}
        for qid, fc in planned.items():
            st = self._types[qid]
            rate = max(r for _, r in st.recent) if st.recent else fc.rate
            want: dict[str, float] = {"arrival_rate": _round(rate)}
            if fc.input_tokens_mean:
                want["input_tokens"] = _round(fc.input_tokens_mean)
            if fc.output_tokens_mean:
                want["output_tokens"] = _round(fc.output_tokens_mean)
            now = current.get(qid)
            if now is None:  # removed from the spec while the forecast ran
                continue
            moved = any(_outside(now[k], v, band) for k, v in want.items())
            if moved or (interval_due and any(now[k] != v for k, v in want.items())):
                patches[qid] = want
        return patches

    # -- reporting ---------------------------------------------------------------------

    def planned_vs_observed(self) -> list[dict[str, Any]]:
        """Per observed type: the rate planned (the spec's), the latest forecast and
        the latest observed window (what a plan's analysis records)."""
        spec_rates = {q["id"]: q["arrival_rate"] for q in self.cp.cluster.spec["query_types"]}
        out = []
        for qid, st in sorted(self._types.items()):
            if qid not in spec_rates or not st.windows:
                continue
            last = st.windows[max(st.windows)]
            out.append(
                {
                    "query_type": qid,
                    "planned_rps": spec_rates[qid],
                    "forecast_rps": st.last.rate if st.last else None,
                    "method": st.last.method if st.last else None,
                    "observed_rps": last.rate,
                    "observed_start": from_epoch(last.start_s),
                    "observed_window_s": last.window_s,
                }
            )
        return out

    async def report(self) -> dict[str, Any]:
        """GET /v1/forecast: per type, the planned rate, the forecast behind it and
        the coverage so far."""
        spec = self.cp.cluster.spec
        policy = spec["policy"]
        applied = await self.store.call(self.store.forecasts_since, 0.0)
        by_type: dict[str, list[ForecastRow]] = {}
        for r in applied:
            by_type.setdefault(r.query_type, []).append(r)
        types = []
        for q in spec["query_types"]:
            st = self._types.get(q["id"])
            fc = st.last if st else None
            windows = sorted(st.windows.values(), key=lambda o: o.start_s) if st else []
            last = windows[-1] if windows else None
            types.append(
                {
                    "query_type": q["id"],
                    "planned_rps": q["arrival_rate"],
                    "source": "forecast" if windows else "declared",
                    "forecast": None
                    if fc is None
                    else {
                        "rate_rps": fc.rate,
                        "quantile": fc.quantile,
                        "method": fc.method,
                        "points": fc.points,
                        "note": fc.note,
                    },
                    "last_observation": None
                    if last is None
                    else {
                        "start": from_epoch(last.start_s),
                        "window_s": last.window_s,
                        "requests": last.requests,
                        "rate_rps": last.rate,
                    },
                    "coverage": coverage(
                        windows, by_type.get(q["id"], []), policy["demand_quantile"]
                    ),
                }
            )
        return {
            "data_time": from_epoch(self._data_now) if self._data_now is not None else None,
            "method": policy["forecast"],
            "quantile": policy["demand_quantile"],
            "replan_interval_s": policy["replan_interval_s"],
            "actuation_delay_s": policy["actuation_delay_s"],
            "query_types": types,
        }


def coverage(
    windows: Sequence[DemandObservation], applied: Sequence[ForecastRow], target: float
) -> dict[str, Any]:
    """How the planned rates held: over the observed windows that started while an
    applied forecast was in force (from `valid_from_s`, its actuation, until the
    next one's), the share whose rate stayed at or below the rate in force."""
    spans = sorted(applied, key=lambda r: r.valid_from_s)
    inside = above = 0
    k = -1
    for w in windows:
        while k + 1 < len(spans) and spans[k + 1].valid_from_s <= w.start_s:
            k += 1
        if k < 0:
            continue
        inside += 1
        above += w.rate > spans[k].rate * (1 + 1e-9)
    return {
        "windows": inside,
        "above_planned": above,
        "share_at_or_below": (inside - above) / inside if inside else None,
        "target": target,
    }


def _outside(old: float, new: float, band: float) -> bool:
    scale = max(abs(old), 1e-9)
    return abs(new - old) > band * scale


def _round(v: float) -> float:
    """Four significant digits: the spec does not churn on noise in the last bits."""
    if v == 0 or not math.isfinite(v):
        return 0.0 if not math.isfinite(v) else v
    return float(f"{v:.4g}")


def _merge(spec: dict[str, Any], patches: dict[str, dict[str, float]]) -> dict[str, Any]:
    out = dict(spec)
    out["query_types"] = [
        {**q, **patches[q["id"]]} if q["id"] in patches else q for q in spec["query_types"]
    ]
    return out
