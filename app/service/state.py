"""The control plane's state: the cluster spec with its generation, the live plan,
the reconciler's status and the conditions derived from them.

Readers get immutable snapshots and never wait for a solve or a write. Writers
(spec changes, plan publication) persist first and then swap the snapshot, so
what a reader sees has always been acknowledged by the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from app.engine.api import demo_scenario_document, normalize_scenario
from app.engine.errors import InputError
from app.service.errors import InvalidInput, PreconditionFailed, Unavailable
from app.service.limits import check_planning_size
from app.service.metrics import Metrics
from app.service.settings import Settings
from app.service.store import PlanRow, Store, utc_now

log = logging.getLogger("llm_allocator.service")


def content_hash(doc: Any) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    generation: int
    spec: dict[str, Any]  # never mutated after construction
    updated_at: str
    etag: str

    @staticmethod
    def make(generation: int, spec: dict[str, Any], updated_at: str) -> ClusterSnapshot:
        # The generation alone would repeat after a database reset; the hash does not.
        return ClusterSnapshot(
            generation, spec, updated_at, f'"g{generation}-{content_hash(spec)[:16]}"'
        )


@dataclass(frozen=True, slots=True)
class ReconcileStatus:
    solving_generation: int | None = None
    failed_generation: int | None = None
    failure_reason: str | None = (
        None  # SolveFailed | SolverTimeout | SolverCrashed | InvalidScenario
    )
    failure_message: str | None = None
    retry_at: float | None = None  # time.monotonic() of the next automatic retry


@dataclass(slots=True)
class _ConditionClock:
    """When each condition last changed status (Kubernetes' lastTransitionTime)."""

    seen: dict[str, tuple[str, str]] = field(default_factory=dict)

    def stamp(self, ctype: str, status: str) -> str:
        prev = self.seen.get(ctype)
        if prev is None or prev[0] != status:
            self.seen[ctype] = (status, utc_now())
        return self.seen[ctype][1]


def if_match_ok(header: str | None, etag: str) -> bool:
    """RFC 9110 If-Match: strong comparison, a list of tags, or `*`."""
    if header is None:
        return True
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags


class Attached:
    """A part of the control plane that ingests observations: it reads the cluster
    state, writes through the store, counts in the metrics, and serializes its own
    updates with a lock."""

    def __init__(
        self, cp: ControlPlane, store: Store, settings: Settings, metrics: Metrics
    ) -> None:
        self.cp = cp
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._lock = asyncio.Lock()


class ControlPlane:
    def __init__(self, store: Store, settings: Settings, metrics: Metrics) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._cluster: ClusterSnapshot | None = None
        self._plan: PlanRow | None = None
        self._status = ReconcileStatus()
        self._conditions: tuple[dict[str, str], ...] = ()
        self._clock = _ConditionClock()
        # Conditions other parts own (SourcesHealthy): type -> (status, reason, message)
        self._extra: dict[str, tuple[str, str, str]] = {}
        self._write_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._closing = False
        self.on_spec_change: Callable[[], None] = lambda: None

    # -- snapshots (what readers use) -----------------------------------------------

    @property
    def cluster(self) -> ClusterSnapshot:
        if self._cluster is None:
            raise RuntimeError("control plane not loaded")
        return self._cluster

    @property
    def plan(self) -> PlanRow | None:
        return self._plan

    @property
    def status(self) -> ReconcileStatus:
        return self._status

    @property
    def conditions(self) -> tuple[dict[str, str], ...]:
        return self._conditions

    @property
    def up_to_date(self) -> bool:
        return self._plan is not None and self._plan.observed_generation >= self.cluster.generation

    def summary_status(self) -> str:
        if self._plan is None:
            return "Pending"
        cond = {c["type"]: c["status"] for c in self._conditions}
        if cond.get("Degraded") == "True":
            return "Degraded"
        if cond.get("UpToDate") != "True":
            return "Reconciling"
        return "Ready"

    # -- start-up ---------------------------------------------------------------------

    async def load(self) -> None:
        """Serve what the database holds at once; seed the demo scenario if empty."""
        row = await self.store.call(self.store.load_cluster)
        if row is None:
            if not self.settings.demo_on_empty:
                raise RuntimeError(
                    "the database holds no cluster spec and demo_on_empty is off; "
                    "start once with demo_on_empty or PUT a spec"
                )
            spec = normalize_scenario(demo_scenario_document())
            updated_at = await self.store.call(self.store.save_cluster, 1, spec, None)
            self._cluster = ClusterSnapshot.make(1, spec, updated_at)
            log.info("empty database: starting with the built-in demo scenario")
        else:
            self._cluster = ClusterSnapshot.make(row.generation, row.spec, row.updated_at)
        self._plan = await self.store.call(self.store.latest_plan)
        if self._plan is not None:
            self.metrics.set_plan(self._plan.plan, self._plan.analysis)
        self._refresh()

    # -- writes -------------------------------------------------------------------------

    async def update_spec(
        self,
        mutate: Callable[[dict[str, Any]], dict[str, Any]],
        if_match: str | None = None,
        field_map: Callable[[str], str] = lambda f: f,
        source: str = "api",
    ) -> tuple[ClusterSnapshot, bool]:
        """Apply `mutate` to the current spec, validate the whole result with the
        engine, persist it with generation + 1 and publish it. Returns the new
        snapshot and whether anything changed (an identical spec keeps its
        generation: there is nothing to re-plan)."""
        async with self._write_lock:
            cur = self.cluster
            if not if_match_ok(if_match, cur.etag):
                raise PreconditionFailed(
                    f"If-Match {if_match} does not match the current ETag {cur.etag} "
                    f"(generation {cur.generation}); GET /v1/cluster and retry",
                    cur.etag,
                )
            candidate = mutate(cur.spec)
            try:
                spec = normalize_scenario(candidate)
            except InputError as exc:
                raise InvalidInput.field(field_map(exc.field), exc.message) from None
            if spec == cur.spec:
                return cur, False
            check_planning_size(
                spec, self.settings.max_plan_pairs, field_map("query_types"), current=cur.spec
            )
            generation = cur.generation + 1
            try:
                updated_at = await self.store.call(
                    self.store.save_cluster, generation, spec, cur.generation
                )
            except sqlite3.Error as exc:
                log.error("could not persist the cluster spec: %s", exc)
                raise Unavailable(
                    "the change could not be stored; it was not applied", 5, "storage-unavailable"
                ) from None
            self._cluster = ClusterSnapshot.make(generation, spec, updated_at)
            self.metrics.spec_updates.labels(source).inc()
            self._refresh()
            self._notify()
        self.on_spec_change()
        return self._cluster, True

    def set_extra_condition(self, ctype: str, value: tuple[str, str, str] | None) -> None:
        """Set (or with None drop) a condition another part of the service owns."""
        if value is None:
            self._extra.pop(ctype, None)
        else:
            self._extra[ctype] = value
        self._refresh()

    async def bump(self, source: str) -> ClusterSnapshot:
        """A new generation for the same spec: an input of planning that is not in the
        spec changed (the calibration), so the plan must be made again."""
        async with self._write_lock:
            cur = self.cluster
            generation = cur.generation + 1
            try:
                updated_at = await self.store.call(
                    self.store.save_cluster, generation, cur.spec, cur.generation
                )
            except sqlite3.Error as exc:
                log.error("could not persist the generation: %s", exc)
                raise Unavailable(
                    "the change could not be stored; it was not applied", 5, "storage-unavailable"
                ) from None
            self._cluster = ClusterSnapshot.make(generation, cur.spec, updated_at)
            self.metrics.spec_updates.labels(source).inc()
            self._refresh()
            self._notify()
        self.on_spec_change()
        return self._cluster

    async def publish(self, row: PlanRow) -> None:
        """Swap in a plan that the store has already made durable."""
        self._plan = row
        self._status = replace(
            self._status,
            solving_generation=None,
            failed_generation=None,
            failure_reason=None,
            failure_message=None,
            retry_at=None,
        )
        self.metrics.set_plan(row.plan, row.analysis)
        self._refresh()
        self._notify()

    def note_solving(self, generation: int) -> None:
        self._status = replace(self._status, solving_generation=generation)
        self._refresh()

    def note_failure(
        self, generation: int, reason: str, message: str, retry_at: float | None
    ) -> None:
        self._status = ReconcileStatus(
            solving_generation=None,
            failed_generation=generation,
            failure_reason=reason,
            failure_message=message,
            retry_at=retry_at,
        )
        self._refresh()
        self._notify()

    # -- waiting ------------------------------------------------------------------------

    def _notify(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def handled(self, generation: int) -> bool:
        """The reconciler is done with `generation`: a plan for it (or a later
        one) is live, or solving it failed."""
        if self._plan is not None and self._plan.observed_generation >= generation:
            return True
        failed = self._status.failed_generation
        return failed is not None and failed >= generation

    async def wait_handled(self, generation: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._closing and not self.handled(generation):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            event = self._changed
            try:
                async with asyncio.timeout(remaining):  # not wait_for: it can lose a cancel
                    await event.wait()
            except TimeoutError:
                return

    def close(self) -> None:
        """Release long-polls so shutdown does not wait for them."""
        self._closing = True
        self._notify()

    # -- conditions ------------------------------------------------------------------------

    def _refresh(self) -> None:
        cluster, plan, st = self.cluster, self._plan, self._status
        self.metrics.set_generations(cluster.generation, plan.observed_generation if plan else None)
        conds: list[tuple[str, str, str, str]] = []
        if plan is None:
            conds.append(("Ready", "False", "NoPlanYet", "the first plan is being computed"))
        else:
            conds.append(("Ready", "True", "PlanAvailable", f"plan version {plan.version} is live"))

        if plan is not None and plan.observed_generation >= cluster.generation:
            conds.append(
                ("UpToDate", "True", "Reconciled", f"plan made for generation {cluster.generation}")
            )
        elif st.failed_generation is not None and st.failed_generation >= cluster.generation:
            when = (
                f"; retrying in {max(0.0, st.retry_at - time.monotonic()):.0f} s"
                if st.retry_at is not None
                else "; waiting for the next change"
            )
            conds.append(
                (
                    "UpToDate",
                    "False",
                    st.failure_reason or "SolveFailed",
                    f"re-plan for generation {st.failed_generation} failed{when}",
                )
            )
        else:
            behind = plan.observed_generation if plan else "none"
            conds.append(
                (
                    "UpToDate",
                    "False",
                    "Reconciling",
                    f"re-planning for generation {cluster.generation} (live plan: {behind})",
                )
            )

        if st.failure_reason is not None:
            serving = f"; serving plan version {plan.version}" if plan else ""
            conds.append(("Degraded", "True", st.failure_reason, f"{st.failure_message}{serving}"))
        elif plan is not None and not plan.plan.get("feasible", True):
            violations = plan.plan.get("violations", [])
            kinds = {v.get("constraint") for v in violations}
            reason = "UnmetDemand" if kinds & {"coverage", "unmet_cap"} else "Infeasible"
            shown = "; ".join(str(v.get("message")) for v in violations[:3])
            more = f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""
            conds.append(("Degraded", "True", reason, f"{shown}{more}"))
        elif plan is not None and plan.plan.get("unmet"):
            share = ", ".join(f"{u['query_type']}: {u['fraction']:.3g}" for u in plan.plan["unmet"])
            conds.append(
                (
                    "Degraded",
                    "False",
                    "UnmetWithinPolicy",
                    f"some demand is left unserved within max_unmet_fraction ({share})",
                )
            )
        else:
            conds.append(("Degraded", "False", "AsPlanned", "all demand served within its SLOs"))
        conds += [(t, *v) for t, v in sorted(self._extra.items())]

        self._conditions = tuple(
            {
                "type": t,
                "status": s,
                "reason": r,
                "message": m,
                "last_transition_time": self._clock.stamp(t, s),
            }
            for t, s, r, m in conds
        )
