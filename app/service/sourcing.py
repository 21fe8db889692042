"""Pulling observations from Prometheus (issue #12): the source configuration
(`PUT/GET /v1/sources`), durable like the spec, and the poller that feeds the
same ingestion paths as the POST endpoints.

`SourcesManager` owns one `SourcePoller` (app.service.sources) for the configured
source: it polls every `poll_interval_s`, hands demand windows to the
`DemandLoop` and latency windows to the `LatencyLoop`, and keeps each query's
cursor (the end of the last window ingested) in SQLite, so a restart or an
outage catches up without losing or double counting a window (the ingestion
paths replace by (type, window start) anyway). Prometheus down, slow, NaN,
empty or partial: the last good state stays, `SourcesHealthy` and the metrics say
what failed, nothing crashes. A configuration naming a query type the spec does
not have, or a deployment that does not resolve or cannot exist (the checks of
latency observations, `observation_problem`), is refused (422); bad PromQL or
an unreachable URL is accepted and shows in the status (it may be fixed on the
Prometheus side).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app.service.demand import DemandLoop
from app.service.errors import InvalidInput
from app.service.latency import LatencyLoop, ObservationCheck
from app.service.schemas.observations import DemandObservationIn
from app.service.schemas.perf import LatencyObservationIn
from app.service.sources.config import SourcesSpec, to_config
from app.service.sources.poller import SourcePoller, SourcesStatus
from app.service.state import ControlPlane
from app.service.store import Store
from app.service.tasks import cancel_and_wait

log = logging.getLogger("llm_allocator.service")

_CONFIG_KEY = "sources"
_CURSOR_KEY = "source_cursors"


class StoredCursors:
    """The poller's cursors, durable in the store (one document)."""

    def __init__(self, store: Store, initial: dict[str, int]) -> None:
        self.store = store
        self._cursors = dict(initial)

    async def get(self, key: str) -> int | None:
        return self._cursors.get(key)

    async def set(self, key: str, end_s: int) -> None:
        self._cursors[key] = end_s
        await self.store.call(self.store.put_document, _CURSOR_KEY, dict(self._cursors))


class SourcesManager:
    def __init__(
        self, cp: ControlPlane, store: Store, demand: DemandLoop, latency: LatencyLoop
    ) -> None:
        self.cp = cp
        self.store = store
        self.demand = demand
        self.latency = latency
        self.spec: SourcesSpec | None = None
        self.poller: SourcePoller | None = None
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        doc = await self.store.call(self.store.get_document, _CONFIG_KEY)
        if doc is not None:
            await self._start(SourcesSpec.model_validate(doc))

    async def put(self, spec: SourcesSpec) -> None:
        """Validate against the cluster spec, store, and (re)start polling. Cursors
        of queries that stay configured are kept."""
        self.check(spec)
        await self.store.call(self.store.put_document, _CONFIG_KEY, spec.model_dump(mode="json"))
        await self.stop()
        await self._start(spec)

    def check(self, spec: SourcesSpec) -> None:
        known = {q["id"] for q in self.cp.cluster.spec["query_types"]}
        errors = [
            (f"demand[{k}].query_type", f"unknown query type {d.query_type!r}")
            for k, d in enumerate(spec.demand)
            if d.query_type not in known
        ]
        check = ObservationCheck(self.cp.cluster.spec)
        for k, q in enumerate(spec.latency):
            ref = LatencyObservationIn.model_validate(
                {
                    "model": q.model,
                    "gpu": q.gpu,
                    "precision": q.precision,
                    "tp": q.tp,
                    "pp": q.pp,
                    "engine": q.engine,
                    "input_tokens": 1.0,
                    "output_tokens": 1.0,
                    "concurrency": 1.0,
                    "ttft_s": 1.0,
                    "tpot_s": 1.0,
                }
            )
            try:
                check(ref, f"latency[{k}]")  # the deployment (a one-token shape)
            except InvalidInput as exc:
                errors += exc.errors
        if errors:
            raise InvalidInput(errors)

    async def _start(self, spec: SourcesSpec) -> None:
        cursors = await self.store.call(self.store.get_document, _CURSOR_KEY) or {}
        self.spec = spec
        self.poller = SourcePoller(
            to_config(spec),
            ingest_demand=self._ingest_demand,
            ingest_latency=self._ingest_latency,
            cursors=StoredCursors(self.store, {k: int(v) for k, v in cursors.items()}),
            planned_types=lambda: {q["id"] for q in self.cp.cluster.spec["query_types"]},
        )
        self._task = asyncio.create_task(self._run(self.poller), name="sources")

    async def _run(self, poller: SourcePoller) -> None:
        """Poll, then refresh the conditions (SourcesHealthy), every interval."""
        interval = poller.config.poll_interval_s
        while True:
            started = time.monotonic()
            try:
                await poller.poll_once(time.time())
            except asyncio.CancelledError:
                raise
            except Exception:  # the poller never raises by contract; a bug must not stop it
                log.exception("source poll failed")
            self.cp.set_extra_condition("SourcesHealthy", self.condition())
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.poller is not None:
            await self.poller.stop()
            self.poller = None

    async def _ingest_demand(self, items: list[dict[str, Any]]) -> None:
        rows = [DemandObservationIn.model_validate(i, strict=False).domain() for i in items]
        await self.demand.ingest(rows, field_prefix="source", skip_overlaps=True)

    async def _ingest_latency(self, items: list[dict[str, Any]]) -> None:
        await self.latency.ingest(
            [LatencyObservationIn.model_validate(i, strict=False) for i in items],
            skip_invalid=True,
        )

    def status(self) -> SourcesStatus | None:
        return self.poller.status() if self.poller is not None else None

    def condition(self) -> tuple[str, str, str] | None:
        """(status, reason, message) of SourcesHealthy; None when no source."""
        st = self.status()
        if st is None:
            return None
        return ("True" if st.healthy else "False", st.reason, st.message)


class SourcesCollector(Collector):
    """The poller's counters and gauges, read at scrape time."""

    def __init__(self, manager: SourcesManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        poller = self.manager.poller
        if poller is None:
            return
        m = poller.metrics()
        polls = CounterMetricFamily(
            "llm_allocator_source_polls",
            "Polls of each configured source query, by outcome",
            labels=["query", "outcome"],
        )
        for (query, outcome), n in sorted(m.polls_total.items()):
            polls.add_metric([query, outcome], n)
        yield polls
        windows = CounterMetricFamily(
            "llm_allocator_source_windows",
            "Observation windows of each source query, ingested or skipped (no value)",
            labels=["query", "result"],
        )
        for query, n in sorted(m.windows_ingested_total.items()):
            windows.add_metric([query, "ingested"], n)
        for query, n in sorted(m.windows_skipped_total.items()):
            windows.add_metric([query, "skipped"], n)
        yield windows
        lag = GaugeMetricFamily(
            "llm_allocator_source_lag_seconds",
            "Time between the last poll and the end of the last window ingested",
            labels=["query"],
        )
        for query, v in sorted(m.lag_seconds.items()):
            lag.add_metric([query], v)
        yield lag
        yield GaugeMetricFamily(
            "llm_allocator_sources_healthy",
            "1 while every source query polls successfully",
            value=1.0 if m.healthy else 0.0,
        )
