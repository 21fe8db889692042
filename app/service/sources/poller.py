"""Polls Prometheus for complete windows and hands them to the service as
observations, each window exactly once, catching up after an outage.

How a poll of one configured query (a demand entry or a latency entry, named by
its `key`) goes:

1. read its cursor (the end of the last window ingested);
2. fetch every complete window after it (`windows.plan_fetch`: at most
   `max_catchup_s` back, in chunks of at most 1000 windows), every PromQL field of
   the entry over the same windows;
3. turn the values into observation items (`items`), hand them to the ingest
   callback, and only then move the cursor to the end of the chunk.

An error in any field of a chunk (Prometheus unreachable, slow, failing,
rejecting the query, ingest or cursor store failing) stops the entry's poll with
nothing of that chunk ingested and the cursor where it was: the next poll fetches
the same windows again, so an outage loses nothing younger than `max_catchup_s`.
A window that Prometheus answers for but without a usable value (missing, NaN,
±Inf) is final: it is skipped, reported, and not fetched again. If ingest succeeds
but the cursor cannot be stored, the windows are ingested again next time; the
observation endpoints replace by (type, start), so that is harmless.

Nothing here reads the clock but `run()`; `poll_once(now_s)` is given the time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from app.service.sources.config import DemandQuery, LatencyQuery, SourceConfig
from app.service.sources.items import SHAPE_REQUIRED, Built, demand_items, latency_items
from app.service.sources.prometheus import (
    PrometheusClient,
    WindowValues,
    shown,
)
from app.service.sources.windows import MAX_WINDOWS_PER_QUERY, FetchPlan, plan_fetch, rfc3339
from app.service.tasks import cancel_and_wait

log = logging.getLogger(__name__)

IngestFn = Callable[[list[dict[str, Any]]], Awaitable[None]]
Outcome = Literal["ok", "partial", "nan", "empty", "error"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "partial", "nan", "empty", "error")
# What a failed poll is about, beyond the HTTP client's ErrorKind values.
EMPTY, SHAPE, INGEST, CURSOR, INTERNAL = "empty", "shape_required", "ingest", "cursor", "internal"
UNPLANNED = "unplanned"  # a demand entry whose query type the cluster spec no longer has

REASONS = {
    "unreachable": "PrometheusUnreachable",
    "timeout": "PrometheusTimeout",
    "bad_query": "QueryRejected",
    "http": "PrometheusHTTPError",
    "server": "PrometheusError",
    "bad_response": "PrometheusBadResponse",
    EMPTY: "NoData",
    SHAPE: "ShapeRequired",
    INGEST: "IngestFailed",
    CURSOR: "CursorStoreFailed",
    INTERNAL: "InternalError",
    UNPLANNED: "QueryTypeNotInSpec",
}


class CursorStore(Protocol):
    """Where the end of the last ingested window of each query is kept (the service
    persists it next to the observations; `MemoryCursorStore` otherwise)."""

    async def get(self, key: str) -> int | None: ...

    async def set(self, key: str, end_s: int) -> None: ...


class MemoryCursorStore:
    def __init__(self, initial: Mapping[str, int] | None = None) -> None:
        self.cursors: dict[str, int] = dict(initial or {})

    async def get(self, key: str) -> int | None:
        return self.cursors.get(key)

    async def set(self, key: str, end_s: int) -> None:
        self.cursors[key] = end_s


@dataclass(frozen=True, slots=True)
class FieldStatus:
    """One PromQL field of a query at its last poll."""

    name: str
    query: str
    outcome: Outcome | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class QueryStatus:
    key: str  # "demand/<type>" or "latency/<model>/<gpu>/<precision>/tp<n>pp<n>/<engine>"
    kind: Literal["demand", "latency"]
    fields: tuple[FieldStatus, ...]
    cursor_s: int | None = None  # end of the last window ingested (None: not read yet)
    lag_s: float | None = None  # poll time − cursor at the last poll
    last_poll_s: float | None = None
    last_outcome: Outcome | None = None
    last_success_s: float | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_s: float | None = None
    consecutive_failures: int = 0
    note: str | None = None  # what the last poll left out, if anything
    windows_ingested: int = 0
    windows_skipped: int = 0


@dataclass(frozen=True, slots=True)
class SourcesStatus:
    """For a `SourcesHealthy` condition: unhealthy once any query has failed
    `failure_threshold` polls in a row; `reason` names the first such failure."""

    healthy: bool
    reason: str
    message: str
    queries: tuple[QueryStatus, ...]


@dataclass(frozen=True, slots=True)
class SourceMetrics:
    """Plain numbers for prometheus_client: polls_total{query,outcome} (counter),
    windows_{ingested,skipped}_total{query} (counters), consecutive_failures{query}
    and lag_seconds{query} (gauges), healthy (0/1 gauge)."""

    polls_total: dict[tuple[str, str], int]
    windows_ingested_total: dict[str, int]
    windows_skipped_total: dict[str, int]
    consecutive_failures: dict[str, int]
    lag_seconds: dict[str, float]
    healthy: bool


@dataclass(frozen=True, slots=True)
class QueryPoll:
    """What one poll did for one query; outcome None: no new complete window."""

    key: str
    outcome: Outcome | None
    windows_ingested: int = 0
    windows_skipped: int = 0
    message: str | None = None


@dataclass(frozen=True, slots=True)
class PollReport:
    now_s: float
    queries: tuple[QueryPoll, ...]


Query = DemandQuery | LatencyQuery


class _Failed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class SourcePoller:
    def __init__(
        self,
        config: SourceConfig,
        *,
        ingest_demand: IngestFn,
        ingest_latency: IngestFn,
        cursors: CursorStore | None = None,
        client: PrometheusClient | None = None,
        clock: Callable[[], float] = time.time,
        max_concurrent_requests: int = 4,
        max_windows_per_query: int = MAX_WINDOWS_PER_QUERY,
        planned_types: Callable[[], set[str]] | None = None,
    ) -> None:
        """`planned_types`: the query types the cluster spec has now (None: any). A
        demand entry of another type is not fetched (its cursor stays, so its
        windows are caught up within `max_catchup_s` if the type comes back) and
        is reported as failing, instead of fetching and failing to store the same
        windows at every poll."""
        self.config = config
        self._planned_types = planned_types
        self.cursors: CursorStore = cursors if cursors is not None else MemoryCursorStore()
        self._ingest_demand = ingest_demand
        self._ingest_latency = ingest_latency
        self._own_client = client is None
        self.client = client or PrometheusClient(config.prometheus_url, timeout_s=config.timeout_s)
        self._clock = clock
        self._max_windows = max_windows_per_query
        self._requests = asyncio.Semaphore(max_concurrent_requests)
        self._poll_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._queries: tuple[Query, ...] = (*config.demand, *config.latency)
        self._status: dict[str, QueryStatus] = {
            q.key: QueryStatus(
                key=q.key,
                kind="demand" if isinstance(q, DemandQuery) else "latency",
                fields=tuple(FieldStatus(n, e) for n, e in q.fields().items()),
            )
            for q in self._queries
        }
        self._polls: dict[tuple[str, str], int] = {
            (q.key, o): 0 for q in self._queries for o in OUTCOMES
        }

    # ------------------------------------------------------------ running --

    async def run(self) -> None:
        """Poll every `poll_interval_s` until cancelled."""
        interval = self.config.poll_interval_s
        while True:
            started = time.monotonic()
            await self.poll_once(self._clock())
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    def start(self) -> asyncio.Task[None]:
        """`run()` as a task of the running loop (the service's lifespan owns it)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="source-poller")
        return self._task

    async def stop(self) -> None:
        """Cancel the loop (an ingest in progress is cancelled: its windows are not
        acknowledged, so they are fetched again) and close the HTTP client."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._own_client:
            await self.client.aclose()

    async def poll_once(self, now_s: float) -> PollReport:
        """Fetch and ingest every complete window not yet ingested, for every
        query. Never raises (but for cancellation); the outcome is in the status."""
        async with self._poll_lock:
            polls = await asyncio.gather(*(self._poll_guarded(q, now_s) for q in self._queries))
        return PollReport(now_s, tuple(polls))

    # ------------------------------------------------------------- status --

    def status(self) -> SourcesStatus:
        queries = tuple(self._status.values())
        threshold = self.config.failure_threshold
        failing = [q for q in queries if q.consecutive_failures >= threshold]
        if failing:
            first = failing[0]
            reason = REASONS.get(first.last_error_kind or "", "QueryFailing")
            detail = "; ".join(f"{q.key}: {q.last_error}" for q in failing[:3])
            more = f" (and {len(failing) - 3} more)" if len(failing) > 3 else ""
            message = (
                f"{len(failing)} of {len(queries)} source queries failed {threshold} or more "
                f"polls in a row: {detail}{more}"
            )
            return SourcesStatus(False, reason, message, queries)
        if not queries:
            return SourcesStatus(True, "NoQueries", "no source queries are configured", queries)
        if all(q.last_poll_s is None for q in queries):
            return SourcesStatus(True, "NotPolledYet", "not polled yet", queries)
        return SourcesStatus(True, "Polling", f"{len(queries)} source queries polled", queries)

    def metrics(self) -> SourceMetrics:
        queries = self._status.values()
        return SourceMetrics(
            polls_total=dict(self._polls),
            windows_ingested_total={q.key: q.windows_ingested for q in queries},
            windows_skipped_total={q.key: q.windows_skipped for q in queries},
            consecutive_failures={q.key: q.consecutive_failures for q in queries},
            lag_seconds={q.key: q.lag_s for q in queries if q.lag_s is not None},
            healthy=self.status().healthy,
        )

    # ---------------------------------------------------------- one query --

    async def _poll_guarded(self, q: Query, now_s: float) -> QueryPoll:
        try:
            return await self._poll(q, now_s)
        except Exception as exc:  # a bug must not stop the loop; it shows in the status
            log.exception("source poll of %s failed", q.key)
            return self._record_failure(q, now_s, INTERNAL, f"{q.key}: internal error: {exc!r}")

    async def _poll(self, q: Query, now_s: float) -> QueryPoll:
        cfg = self.config
        name = _display(q)
        if (
            isinstance(q, DemandQuery)
            and self._planned_types is not None
            and q.query_type not in self._planned_types()
        ):
            return self._record_failure(
                q,
                now_s,
                UNPLANNED,
                f"{name}: the cluster spec has no query type {q.query_type!r} (removed?): "
                "not fetched until it is back or PUT /v1/sources drops the entry",
            )
        try:
            cursor = await self.cursors.get(q.key)
        except Exception as exc:
            return self._record_failure(q, now_s, CURSOR, f"{name}: cannot read its cursor: {exc}")
        self._update(q.key, cursor_s=cursor)
        plan = plan_fetch(
            now_s,
            cursor,
            window_s=cfg.window_s,
            settle_s=cfg.settle_s,
            max_catchup_s=cfg.max_catchup_s,
            initial_backfill_s=cfg.initial_backfill_s,
        )
        if plan.count == 0:
            return QueryPoll(q.key, None)
        if isinstance(q, LatencyQuery) and not q.has_shape:
            return self._record_failure(q, now_s, SHAPE, f"{name}: {SHAPE_REQUIRED}")

        ingested, skipped = 0, plan.dropped
        notes: list[str] = []
        if plan.dropped:
            notes.append(
                f"{plan.dropped} window(s) older than max_catchup_s="
                f"{cfg.max_catchup_s:g} s were not fetched (from "
                f"{rfc3339(plan.first_end - (plan.dropped + 1) * cfg.window_s)})"
            )
        chunk_outcomes: list[Outcome] = []
        for first_end, last_end in plan.chunks(self._max_windows):
            try:
                built = await self._chunk(q, name, first_end, last_end)
            except _Failed as f:
                # Dropped windows count once the cursor has moved past them.
                done = bool(chunk_outcomes)
                return self._record_failure(
                    q, now_s, f.kind, f.message, ingested=ingested, skipped=skipped if done else 0
                )
            ingested += len(built.items)
            skipped += len(built.skipped)
            notes.extend(built.notes)
            chunk_outcomes.append(built.outcome)
            self._update(q.key, cursor_s=last_end)
        return self._record_polled(q, now_s, plan, chunk_outcomes, ingested, skipped, notes)

    async def _chunk(self, q: Query, name: str, first_end: int, last_end: int) -> Built:
        w = self.config.window_s
        fields = q.fields()
        results = await asyncio.gather(
            *(self._fetch(expr, first_end, last_end) for expr in fields.values())
        )
        values = dict(zip(fields, results, strict=True))
        self._record_fields(q.key, values)
        for field, v in values.items():
            if v.error is not None:
                raise _Failed(v.error.kind.value, f"{name} ({field}): {v.error.message}")
        if isinstance(q, DemandQuery):
            built = demand_items(q, w, values)
            ingest = self._ingest_demand
        else:
            built = latency_items(q, w, values)
            ingest = self._ingest_latency
        if built.items:
            try:
                await ingest(list(built.items))
            except Exception as exc:
                raise _Failed(
                    INGEST,
                    f"{name}: storing {len(built.items)} observation(s) from "
                    f"{rfc3339(built.starts[0])} failed: {exc}",
                ) from exc
        try:
            await self.cursors.set(q.key, last_end)
        except Exception as exc:
            raise _Failed(
                CURSOR,
                f"{name}: observations up to {rfc3339(last_end)} stored but the cursor was "
                f"not (they will be fetched and replaced again): {exc}",
            ) from exc
        if built.outcome == "empty":
            # Say what matched nothing rather than list every window.
            empty = [n for n, v in values.items() if v.outcome == "empty"]
            if empty:
                built = replace(
                    built,
                    notes=(
                        f"{name}: no data: {', '.join(empty)} matched no series for the "
                        f"windows from {rfc3339(first_end - w)} to {rfc3339(last_end)}; check "
                        f"the metric names and labels: {shown(values[empty[0]].query)}",
                    ),
                )
        return built

    async def _fetch(self, expr: str, first_end: int, last_end: int) -> WindowValues:
        async with self._requests:
            return await self.client.windows(
                expr, window_s=self.config.window_s, first_end=first_end, last_end=last_end
            )

    # ---------------------------------------------------------- recording --

    def _update(self, key: str, **changes: Any) -> None:
        self._status[key] = replace(self._status[key], **changes)

    def _record_fields(self, key: str, values: Mapping[str, WindowValues]) -> None:
        fields = []
        for f in self._status[key].fields:
            v = values.get(f.name)
            if v is None:
                fields.append(f)
                continue
            message = v.error.message if v.error else "; ".join(v.warnings) or None
            fields.append(replace(f, outcome=v.outcome, message=message))
        self._update(key, fields=tuple(fields))

    def _record_failure(
        self,
        q: Query,
        now_s: float,
        kind: str,
        message: str,
        *,
        ingested: int = 0,
        skipped: int = 0,
        outcome: Outcome = "error",
    ) -> QueryPoll:
        s = self._status[q.key]
        self._polls[(q.key, outcome)] += 1
        self._status[q.key] = replace(
            s,
            last_poll_s=now_s,
            last_outcome=outcome,
            last_error=message,
            last_error_kind=kind,
            last_error_s=now_s,
            consecutive_failures=s.consecutive_failures + 1,
            windows_ingested=s.windows_ingested + ingested,
            windows_skipped=s.windows_skipped + skipped,
            lag_s=None if s.cursor_s is None else now_s - s.cursor_s,
            # a chunk ingested before the failure is still news worth showing
            note=s.note if not ingested else f"{ingested} window(s) ingested before the failure",
        )
        # Say it when it starts and when it turns unhealthy, not at every poll.
        failures = s.consecutive_failures + 1
        level = logging.WARNING if failures in (1, self.config.failure_threshold) else logging.DEBUG
        log.log(level, "source poll failed (%d in a row): %s", failures, message)
        return QueryPoll(q.key, outcome, ingested, skipped, message)

    def _record_polled(
        self,
        q: Query,
        now_s: float,
        plan: FetchPlan,
        chunk_outcomes: list[Outcome],
        ingested: int,
        skipped: int,
        notes: list[str],
    ) -> QueryPoll:
        outcome: Outcome
        if ingested:
            partial = skipped or any(o != "ok" for o in chunk_outcomes)
            outcome = "partial" if partial else "ok"
        else:
            outcome = "empty" if "empty" in chunk_outcomes else "nan"
        note = "; ".join(notes) or None
        if outcome == "empty":
            # Prometheus answered, but nothing matched: most likely a wrong metric
            # name or label, so it counts as a failure (the windows are final, though:
            # the cursor has moved past them).
            return self._record_failure(
                q, now_s, EMPTY, note or f"{_display(q)}: no data", skipped=skipped, outcome=outcome
            )
        s = self._status[q.key]
        self._polls[(q.key, outcome)] += 1
        if s.consecutive_failures:
            log.info(
                "source poll of %s recovered after %d failed polls", q.key, s.consecutive_failures
            )
        # NaN everywhere is not a failure: 0/0 when nothing completed in a window is
        # the normal reading of an idle deployment.
        self._status[q.key] = replace(
            s,
            last_poll_s=now_s,
            last_outcome=outcome,
            last_success_s=now_s,
            consecutive_failures=0,
            windows_ingested=s.windows_ingested + ingested,
            windows_skipped=s.windows_skipped + skipped,
            lag_s=now_s - plan.last_end,
            note=note,
        )
        return QueryPoll(q.key, outcome, ingested, skipped, note)


def _display(q: Query) -> str:
    if isinstance(q, DemandQuery):
        return f'demand "{q.query_type}"'
    engine = f" on {q.engine}" if q.engine else ""
    return f"latency of {q.model} on {q.gpu} {q.precision} tp{q.tp} pp{q.pp}{engine}"
