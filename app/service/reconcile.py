"""The reconcile loop: one background task that keeps the live plan in step with
the cluster spec.

Level-triggered: a spec change only sets a wake-up flag; the loop then solves
the *latest* spec, so a burst of changes during a solve collapses into one more
solve. Each re-plan runs AGH within `time_budget_s`, warm-started from the live
plan (the engine prices the policy's change cost against it), in the solver
process. The result is made durable in SQLite and only then swapped in.

Failures (worker crash, hard time-out, engine error) mark the plan Degraded and
keep the previous plan live. The loop retries the same generation after a
back-off (doubling up to `retry_backoff_max_s`); a new change is picked up no
sooner than the back-off allows, so a storm of changes cannot become a storm of
failing solves. An engine InputError is deterministic: it is not retried until
the spec changes. A plan the evaluator finds infeasible is published anyway
(Degraded: Infeasible / UnmetDemand, with the violations).

Background improvement (`improve_budget_s` > 0). After a re-plan for generation
N is published, one improvement solve for N runs in a pool of its own (one
process): AGH warm-started from the *published* plan with `improve_budget_s`
and seed + 1, then the exact polish and LNS. The change cost is priced against
the published plan, and the published plan is priced for the same scenario with
itself live (its own change cost is sunk). The new plan is published, as a new
plan version of the same generation (`solver.source: "improvement"`, with the
saving in `solver.improvement`), only if it is feasible and saves more than
max(`improve_min_saving_usd`, `improve_min_saving_fraction` · the published
plan's objective), or if it is feasible where the published plan is not. A
newer generation stops it at once (the shared generation counter, announced
before the re-plan is started) and it is never published once the generation or
the live plan has moved on: the re-plan of a newer generation always reads the
live plan and publishes under the same lock. Its own pool means a re-plan never
waits for an improvement. It is skipped when the re-plan's bound already shows
that no plan can save the threshold. An improvement in flight when the service
stops is lost; none is started at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.engine.api import Calibration, plan_diff
from app.engine.contracts import SolverOptions
from app.engine.errors import InputError
from app.service.metrics import Metrics
from app.service.pool import SolverCrashed, SolverPool, SolverTimeout
from app.service.settings import Settings
from app.service.state import ControlPlane
from app.service.store import PlanRow
from app.service.tasks import cancel_and_wait
from app.service.worker import (
    ImproveJob,
    ImproveOutcome,
    SolveJob,
    SolveOutcome,
    improve_job,
    saving_threshold,
    solve_job,
)

log = logging.getLogger("llm_allocator.service")


@dataclass(frozen=True, slots=True)
class ImprovementRecord:
    """How one background improvement ended (kept for tests and debugging)."""

    generation: int
    from_version: int
    outcome: str  # published, not_better, stopped, superseded, failed
    result: ImproveOutcome | None  # None: it failed


class Reconciler:
    def __init__(
        self,
        state: ControlPlane,
        pool: SolverPool,
        settings: Settings,
        metrics: Metrics,
        demand_info: Callable[[], list[dict[str, Any]]] = list,
        calibration: Callable[[], Calibration | None] = lambda: None,
        improve_pool: SolverPool | None = None,
    ) -> None:
        """`demand_info` gives, per observed query type, the planned and the latest
        observed rate: recorded in each plan's analysis. `calibration` gives the
        calibration in force: the solver plans with it. `improve_pool` (None:
        no background improvement) runs the improvement solves."""
        self.demand_info = demand_info
        self.calibration = calibration
        self.state = state
        self.pool = pool
        self.improve_pool = improve_pool
        self.settings = settings
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff_s = 0.0
        self._blocked_generation: int | None = None  # InputError: wait for a new spec
        # Reading the live plan for a re-plan and every publication happen under it,
        # so an improvement can never be published over (or under) a newer plan.
        self._publish_lock = asyncio.Lock()
        self._improvements: set[asyncio.Task[None]] = set()
        self.solves = 0  # re-plans attempted (tests read it)
        self.improving: int | None = None  # generation of the improvement in flight
        self.improvements: deque[ImprovementRecord] = deque(maxlen=32)  # newest last

    def wake(self) -> None:
        """The spec changed: re-plan the latest, and stop a solve (re-plan or
        improvement) of an older one."""
        generation = self.state.cluster.generation
        if self.improve_pool is not None:
            self.improve_pool.announce(generation)
        self.pool.announce(generation)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reconcile")
        self.wake()  # the plan may be behind the stored spec (or absent)

    async def stop(self) -> None:
        for task in [self._task, *self._improvements]:
            await cancel_and_wait(task)
        self._task = None
        self._improvements.clear()

    async def _run(self) -> None:
        while True:
            retry_at = self.state.status.retry_at
            if retry_at is not None:
                # Back-off: sleep it out, then retry even if nothing changed.
                delay = retry_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await self._wake.wait()
            self._wake.clear()
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in the loop itself must not stop reconciling
                log.exception("reconcile loop error")
                self._fail(self.state.cluster.generation, "SolveFailed", "internal error")

    def _fail(self, generation: int, reason: str, message: str, retry: bool = True) -> None:
        s = self.settings
        self._backoff_s = min(
            s.retry_backoff_max_s, max(s.retry_backoff_initial_s, 2 * self._backoff_s)
        )
        retry_at = time.monotonic() + self._backoff_s if retry else None
        if not retry:
            self._blocked_generation = generation
        self.metrics.replans.labels("failed").inc()
        self.state.note_failure(generation, reason, message, retry_at)
        log.warning("re-plan for generation %d failed (%s): %s", generation, reason, message)

    async def reconcile_once(self) -> bool:
        """Solve the latest spec if the live plan is behind it. Returns True if a
        plan was published."""
        async with self._publish_lock:  # not while an improvement is being published
            cluster, live = self.state.cluster, self.state.plan
        if live is not None and live.observed_generation >= cluster.generation:
            return False
        if self._blocked_generation == cluster.generation:
            return False
        s = self.settings
        self.state.note_solving(cluster.generation)
        self.solves += 1
        started = time.monotonic()
        job = SolveJob(
            spec=cluster.spec,
            options=SolverOptions(
                time_budget_s=s.time_budget_s, seed=s.seed, max_starts=s.max_starts
            ),
            current_plan=live.plan if live else None,
            generation=cluster.generation,
            calibration=self.calibration(),
        )
        try:
            out = await self.pool.run(s.time_budget_s + s.solve_grace_s, solve_job, job)
        except SolverTimeout as exc:
            self._fail(cluster.generation, "SolverTimeout", str(exc))
            return False
        except SolverCrashed as exc:
            self._fail(cluster.generation, "SolverCrashed", str(exc))
            return False
        except InputError as exc:
            # The engine rejects the spec it validated before: retrying the same
            # spec would fail the same way.
            self._fail(
                cluster.generation,
                "InvalidScenario",
                f"{exc.field}: {exc.message}",
                retry=False,
            )
            return False
        except Exception as exc:  # a bug in the engine: logged, retried with back-off
            log.exception("solver error")
            self._fail(cluster.generation, "SolveFailed", f"{type(exc).__name__}: {exc}")
            return False
        finally:
            self.metrics.solve_seconds.labels("reconcile").observe(time.monotonic() - started)
        return await self._publish(job, out)

    async def _store_and_swap(
        self, generation: int, spec: dict[str, Any], out: SolveOutcome, solver: dict[str, Any]
    ) -> PlanRow:
        """Store the plan (durable first), then swap it in; sqlite3.Error if it
        could not be stored (nothing changed then). Call under `_publish_lock`."""
        live = self.state.plan
        diff = plan_diff(live.plan if live else None, out.plan, live.version if live else None)
        analysis = {**out.analysis, "demand": self.demand_info()}
        row = await self.state.store.call(
            self.state.store.insert_plan,
            generation,
            spec,
            out.plan,
            solver,
            analysis,
            diff,
            self.settings.plan_history_limit,
            out.explanation,
        )
        await self.state.publish(row)
        return row

    async def _publish(self, job: SolveJob, out: SolveOutcome) -> bool:
        """Publish a re-plan; then start its background improvement."""
        assert job.generation is not None
        generation = job.generation
        try:
            async with self._publish_lock:
                row = await self._store_and_swap(
                    generation, job.spec, out, {**out.solver, "source": "replan"}
                )
        except sqlite3.Error as exc:
            self._fail(generation, "StorageError", f"could not store the plan: {exc}")
            return False
        self._backoff_s = 0.0
        self._blocked_generation = None
        self.metrics.replans.labels("published").inc()
        diff = row.diff
        log.info(
            "plan version %d for generation %d: cost %.2f, feasible %s, %s, %d action(s)",
            row.version,
            row.observed_generation,
            float(out.plan["cost"].get("total") or 0.0),
            out.plan.get("feasible"),
            out.solver.get("termination"),
            len(diff["actions"]),
        )
        self._start_improvement(row, job.calibration)
        return True

    # -- background improvement ---------------------------------------------------------

    def _start_improvement(self, row: PlanRow, calibration: Calibration | None) -> None:
        """One improvement of the plan just published, unless it is disabled, the
        spec has moved on, or the re-plan's bound shows nothing can save enough."""
        s = self.settings
        if self.improve_pool is None or s.improve_budget_s <= 0:
            return
        if self.state.cluster.generation != row.observed_generation:
            return  # a newer generation is already waiting: it would stop at once
        if _bound_rules_out(row, s):
            log.debug("plan version %d is proven within the threshold: no improvement", row.version)
            return
        job = ImproveJob(
            SolveJob(
                spec=row.spec,
                options=SolverOptions(
                    time_budget_s=s.improve_budget_s, seed=s.seed + 1, max_starts=s.max_starts
                ),
                current_plan=row.plan,
                generation=row.observed_generation,
                explain=True,
                calibration=calibration,
            ),
            min_saving_usd=s.improve_min_saving_usd,
            min_saving_fraction=s.improve_min_saving_fraction,
        )
        task = asyncio.create_task(self._improve(row, job), name="improve")
        self._improvements.add(task)
        task.add_done_callback(self._improvements.discard)

    async def _improve(self, base: PlanRow, job: ImproveJob) -> None:
        assert self.improve_pool is not None
        s = self.settings
        generation = base.observed_generation
        self.improving = generation
        started = time.monotonic()
        res: ImproveOutcome | None = None
        try:
            res = await self.improve_pool.run(
                s.improve_budget_s + s.solve_grace_s, improve_job, job
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # crash, hard time-out, a bug: the live plan stays
            log.warning("improvement of plan version %d failed: %s", base.version, exc)
        finally:
            if self.improving == generation:
                self.improving = None
            self.metrics.solve_seconds.labels("improvement").observe(time.monotonic() - started)
        outcome = "failed" if res is None else await self._publish_improvement(base, job, res)
        self.improvements.append(ImprovementRecord(generation, base.version, outcome, res))
        self.metrics.improvements.labels(outcome).inc()
        if res is not None:
            log.info(
                "improvement of plan version %d (generation %d): %s; $%.2f -> $%.2f "
                "(threshold $%.2f, %s)",
                base.version,
                generation,
                outcome,
                res.baseline,
                res.objective,
                res.threshold,
                res.termination,
            )

    async def _publish_improvement(
        self, base: PlanRow, job: ImproveJob, res: ImproveOutcome
    ) -> str:
        """Publish `res` if it is worth it and `base` is still the live plan of the
        latest generation; the outcome for the metrics."""
        if res.termination == "stopped":
            return "stopped"
        out = res.outcome
        if out is None:
            return "not_better"
        async with self._publish_lock:
            live, cluster = self.state.plan, self.state.cluster
            if (
                live is None
                or live.version != base.version
                or cluster.generation != base.observed_generation
            ):
                return "superseded"
            solver = {
                **out.solver,
                "source": "improvement",
                "improvement": {
                    "from_version": base.version,
                    "baseline_objective": res.baseline,
                    "baseline_feasible": res.baseline_feasible,
                    "saving": res.saving,
                    "threshold": res.threshold,
                },
            }
            try:
                await self._store_and_swap(base.observed_generation, job.solve.spec, out, solver)
            except sqlite3.Error as exc:  # the live plan is still good: not Degraded
                log.error("could not store the improved plan: %s", exc)
                return "failed"
        self.metrics.improvement_savings.inc(max(0.0, res.saving))
        return "published"


def _bound_rules_out(row: PlanRow, s: Settings) -> bool:
    """The re-plan's bound B (valid with the change cost from the plan before it)
    bounds any improvement: for a plan X, cost(X) + change(X←new) ≥ B − change(new←old)
    (the triangle inequality on replica counts), so no plan saves more than
    objective − B. A plan that breaks constraints is never ruled out."""
    bound = row.solver.get("bound")
    if bound is None or not row.plan.get("feasible"):
        return False
    cost = row.plan.get("cost", {})
    total = float(cost.get("total") or 0.0)
    baseline = total - float(cost.get("change_cost") or 0.0)
    threshold = saving_threshold(baseline, s.improve_min_saving_usd, s.improve_min_saving_fraction)
    return total - float(bound) <= threshold
