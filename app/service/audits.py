"""Exact MILP audits as jobs: create, poll, cancel; bounded in number and age.

Each audit runs in a process of its own (spawned), so building the Pyomo model
never holds the service's GIL, and a hard kill (past the time limit plus a
grace, or when a cancel is not honoured) takes CBC with it (the child leads its
own process group). Cancel: a cross-process Event reaches the child, which sets
the threading.Event that `audit_documents` watches; the engine then kills CBC
within a second and returns what it has.

Admission: at most `max_concurrent_audits` run at once; up to
`max_queued_audits` more wait in FIFO order; beyond that POST answers 429 with
Retry-After. Retention: finished audits beyond the newest
`audit_retention_count`, or older than `audit_retention_age_s`, are deleted
(checked at start-up and on each new audit). States: queued -> running ->
succeeded | failed | cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from app.engine.api import Calibration
from app.engine.contracts import ExactOptions
from app.engine.errors import InputError
from app.service.errors import Busy, InvalidInput
from app.service.metrics import Metrics
from app.service.schemas import AuditCreate
from app.service.settings import Settings
from app.service.state import ControlPlane
from app.service.store import AuditRow
from app.service.worker import audit_child

log = logging.getLogger("llm_allocator.service")

CANCEL_GRACE_S = 5.0  # the engine promises CBC is dead within 1 s of a cancel
KILL_GRACE_S = 30.0
SHUTDOWN_GRACE_S = 3.0  # at shutdown, how long cancelled audits get to stop CBC


def certified_gap(result: dict[str, Any] | None) -> float | None:
    """The audited plan's (cost − proven bound) / cost, from the engine's audit
    document (`MilpResult.certified_gap`); None when unknown."""
    gap = (result or {}).get("certified_gap")
    return float(gap) if isinstance(gap, int | float) and not isinstance(gap, bool) else None


@dataclass(frozen=True, slots=True)
class _AuditInput:
    """What an audit process is given: the spec, the plan (None: no plan yet), the
    hard time limit and the MILP options."""

    spec: dict[str, Any]
    plan: dict[str, Any] | None
    time_limit_s: float
    options: ExactOptions


@dataclass(slots=True)
class _Job:
    id: str
    cancel: MpEvent
    work: _AuditInput
    state: str = "queued"
    cancel_requested: bool = False
    task: asyncio.Task[None] | None = None
    process: BaseProcess | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class AuditManager:
    def __init__(
        self,
        state: ControlPlane,
        settings: Settings,
        metrics: Metrics,
        calibration: Callable[[], Calibration | None] = lambda: None,
    ) -> None:
        """`calibration` gives the calibration in force: an audit's MILP uses it."""
        self.calibration = calibration
        self.state = state
        self.store = state.store
        self.settings = settings
        self.metrics = metrics
        self._ctx: Any = multiprocessing.get_context(settings.solver_start_method)
        self._slots = asyncio.Semaphore(settings.max_concurrent_audits)
        self._jobs: dict[str, _Job] = {}
        self._admitted = 0  # queued + running, counted from admission on
        self._waiters = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_audits, thread_name_prefix="audit-wait"
        )
        self._closing = False

    async def start(self) -> None:
        n = await self.store.call(self.store.fail_interrupted_audits)
        if n:
            log.warning("%d audit(s) interrupted by the last shutdown marked failed", n)
        await self._prune()

    async def _prune(self) -> None:
        s = self.settings
        await self.store.call(
            self.store.prune_audits, s.audit_retention_count, s.audit_retention_age_s
        )
        await self._publish_counts()

    async def _publish_counts(self) -> None:
        self.metrics.set_audit_counts(await self.store.call(self.store.count_audits_by_state))

    def is_cancel_requested(self, audit_id: str) -> bool:
        job = self._jobs.get(audit_id)
        return bool(job and job.cancel_requested)

    # -- create ----------------------------------------------------------------------

    async def create(self, req: AuditCreate) -> AuditRow:
        s = self.settings
        # Admission is one step: the check and the reservation happen with no await
        # in between, so concurrent requests cannot all pass the check before any
        # of them is counted. The reservation is released when the job ends, or
        # here if creating it fails.
        if self._admitted >= s.max_concurrent_audits + s.max_queued_audits:
            raise Busy(
                f"{self._admitted} audits are queued or running (limit "
                f"{s.max_concurrent_audits} running + {s.max_queued_audits} queued); "
                "retry later or cancel one",
                10,
                "too-many-audits",
            )
        self._admitted += 1
        try:
            return await self._create(req)
        except BaseException:
            self._admitted -= 1
            raise

    async def _create(self, req: AuditCreate) -> AuditRow:
        s = self.settings
        time_limit = req.time_limit_s or min(s.audit_default_time_limit_s, s.audit_max_time_limit_s)
        if time_limit > s.audit_max_time_limit_s:
            raise InvalidInput.field(
                "time_limit_s", f"must be <= {s.audit_max_time_limit_s} (service setting)"
            )
        if req.plan_version is not None:
            row = await self.store.call(self.store.get_plan, req.plan_version)
            if row is None:
                raise InvalidInput.field(
                    "plan_version",
                    f"plan version {req.plan_version} does not exist (or was pruned)",
                )
        else:
            row = self.state.plan
        spec = row.spec if row else self.state.cluster.spec
        plan_doc = row.plan if row else None
        options = ExactOptions.model_validate(req.model_dump(include=_EXACT_FIELDS))
        request_doc = {
            "time_limit_s": time_limit,
            **options.model_dump(),
            "plan_version": row.version if row else None,
        }
        audit_id = uuid.uuid4().hex
        created = await self.store.call(
            self.store.insert_audit,
            audit_id,
            request_doc,
            row.version if row else None,
            row.observed_generation if row else self.state.cluster.generation,
        )
        try:
            await self._prune()
        except Exception:  # retention is housekeeping: it must not fail a create
            log.exception("pruning audits failed")
        # From here on the job owns the admission reservation (released when it ends).
        job = _Job(audit_id, self._ctx.Event(), _AuditInput(spec, plan_doc, time_limit, options))
        self._jobs[audit_id] = job
        job.task = asyncio.create_task(self._run(job), name=f"audit-{audit_id}")
        return created

    # -- run ---------------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        try:
            async with self._slots:
                if self._closing:  # the slot came free because shutdown killed the audit in it
                    await self._finish(job, "failed", None, "interrupted by shutdown")
                    return
                if job.cancel_requested:
                    await self._finish(job, "cancelled", None, "cancelled while queued")
                    return
                job.state = "running"
                await self.store.call(self.store.mark_audit_running, job.id)
                await self._publish_counts()
                loop = asyncio.get_running_loop()
                msg = await loop.run_in_executor(self._waiters, self._run_process, job)
            if self._closing:
                await self._finish(job, "failed", None, "interrupted by shutdown")
            elif job.cancel_requested:
                result = msg[1] if msg[0] == "ok" else None
                await self._finish(job, "cancelled", result, "cancelled by request")
            elif msg[0] == "ok":
                await self._finish(job, "succeeded", msg[1], None)
            else:
                await self._finish(job, "failed", None, _describe(msg[1]))
        except asyncio.CancelledError:
            if job.cancel_requested and not self._closing:
                # A user cancel of a queued audit (cancel() cancels the waiting task).
                await self._finish(job, "cancelled", None, "cancelled while queued")
                return
            # Shutdown.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._finish(job, "failed", None, "interrupted by shutdown"))
            raise
        except Exception as exc:
            log.exception("audit %s failed", job.id)
            await self._finish(job, "failed", None, f"internal error: {exc}")
        finally:
            self._jobs.pop(job.id, None)
            self._admitted -= 1
            job.finished.set()

    async def _finish(
        self, job: _Job, state: str, result: dict[str, Any] | None, error: str | None
    ) -> None:
        job.state = state
        await self.store.call(self.store.finish_audit, job.id, state, result, error)
        await self._publish_counts()

    def _run_process(self, job: _Job) -> tuple[str, Any]:
        """Runs on a waiter thread: start the audit process and wait for its one
        message, enforcing the hard limit and the cancel grace."""
        w = job.work
        recv, send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=audit_child,
            args=(send, job.cancel, w.spec, w.plan, w.time_limit_s, w.options, self.calibration()),
            name=f"audit-{job.id[:8]}",
        )
        proc.start()
        job.process = proc
        send.close()
        hard_deadline = time.monotonic() + w.time_limit_s + KILL_GRACE_S
        cancel_deadline: float | None = None
        msg: tuple[str, Any] | None = None
        try:
            while True:
                if recv.poll(0.2):
                    try:
                        msg = recv.recv()
                    except EOFError:
                        msg = None
                    break
                if not proc.is_alive():
                    if recv.poll(0):
                        with contextlib.suppress(EOFError):
                            msg = recv.recv()
                    break
                now = time.monotonic()
                if job.cancel_requested and cancel_deadline is None:
                    cancel_deadline = now + CANCEL_GRACE_S
                if now > hard_deadline or (cancel_deadline is not None and now > cancel_deadline):
                    log.error("audit %s did not stop in time; killing it", job.id)
                    break
        finally:
            _kill_group(proc)
            proc.join(timeout=5)
            recv.close()
            job.process = None
        if msg is None:
            return (
                "error",
                RuntimeError(f"audit process ended without a result (exit code {proc.exitcode})"),
            )
        return msg

    # -- read / cancel -------------------------------------------------------------------

    async def cancel(self, audit_id: str) -> tuple[AuditRow | None, bool]:
        """Request cancellation. Returns the record and whether a cancel was
        requested (False: the audit had already finished)."""
        job = self._jobs.get(audit_id)
        if job is not None:
            job.cancel_requested = True
            job.cancel.set()
            if job.state == "queued" and job.task is not None:
                job.task.cancel()  # it waits for a slot: take it out of the queue now
                await job.finished.wait()
        row = await self.store.call(self.store.get_audit, audit_id)
        return row, job is not None

    async def close(self) -> None:
        """Cancel every audit, give the engine a moment to stop CBC itself (CBC
        runs in its own session, out of reach of our process-group kill), then
        kill what is left."""
        self._closing = True
        jobs = list(self._jobs.values())
        for job in jobs:
            # the engine's stop signal, not a user's cancel: these audits are recorded
            # as interrupted by shutdown, not as cancelled (`cancel_requested` stays)
            job.cancel.set()
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while any(j.process is not None for j in jobs) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for job in jobs:
            if job.process is not None:
                _kill_group(job.process)
            if job.task is not None:
                job.task.cancel()
        for job in jobs:
            if job.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job.task
        self._waiters.shutdown(wait=True)


_EXACT_FIELDS = set(ExactOptions.model_fields)


def _describe(exc: object) -> str:
    """An audit failure in the user's terms: an input error names the field."""
    if isinstance(exc, InputError):
        return f"{exc.field}: {exc.message}"
    return str(exc) or type(exc).__name__


def _kill_group(proc: BaseProcess) -> None:
    if proc.pid is None or proc.exitcode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()
