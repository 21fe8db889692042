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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from app.engine.api import Calibration, plan_diff
from app.engine.contracts import SolverOptions
from app.engine.errors import InputError
from app.service.metrics import Metrics
from app.service.pool import SolverCrashed, SolverPool, SolverTimeout
from app.service.settings import Settings
from app.service.state import ControlPlane
from app.service.worker import SolveJob, SolveOutcome, solve_job

log = logging.getLogger("llm_allocator.service")


class Reconciler:
    def __init__(
        self,
        state: ControlPlane,
        pool: SolverPool,
        settings: Settings,
        metrics: Metrics,
        demand_info: Callable[[], list[dict[str, Any]]] = list,
        calibration: Callable[[], Calibration | None] = lambda: None,
    ) -> None:
        """`demand_info` gives, per observed query type, the planned and the latest
        observed rate: recorded in each plan's analysis. `calibration` gives the
        calibration in force: the solver plans with it."""
        self.demand_info = demand_info
        self.calibration = calibration
        self.state = state
        self.pool = pool
        self.settings = settings
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff_s = 0.0
        self._blocked_generation: int | None = None  # InputError: wait for a new spec
        self.solves = 0  # re-plans attempted (tests read it)

    def wake(self) -> None:
        """The spec changed: re-plan the latest, and stop a solve of an older one."""
        self.pool.announce(self.state.cluster.generation)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reconcile")
        self.wake()  # the plan may be behind the stored spec (or absent)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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
            options=SolverOptions(time_budget_s=s.time_budget_s, seed=s.seed),
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
        return await self._publish(cluster.generation, cluster.spec, out)

    async def _publish(self, generation: int, spec: dict[str, Any], out: SolveOutcome) -> bool:
        """Store the plan (durable first), then swap it in."""
        live = self.state.plan
        diff = plan_diff(live.plan if live else None, out.plan, live.version if live else None)
        analysis = {**out.analysis, "demand": self.demand_info()}
        try:
            row = await self.state.store.call(
                self.state.store.insert_plan,
                generation,
                spec,
                out.plan,
                out.solver,
                analysis,
                diff,
                self.settings.plan_history_limit,
                out.explanation,
            )
        except sqlite3.Error as exc:
            self._fail(generation, "StorageError", f"could not store the plan: {exc}")
            return False
        self._backoff_s = 0.0
        self._blocked_generation = None
        await self.state.publish(row)
        self.metrics.replans.labels("published").inc()
        log.info(
            "plan version %d for generation %d: cost %.2f, feasible %s, %s, %d action(s)",
            row.version,
            row.observed_generation,
            float(out.plan["cost"].get("total") or 0.0),
            out.plan.get("feasible"),
            out.solver.get("termination"),
            len(diff["actions"]),
        )
        return True
