"""Code that runs in the solver processes, never in the service's own process.

It imports only the engine facade. A job crosses the process boundary as a frozen
`SolveJob` (the scenario and plan documents as stored, and the one
`SolverOptions`); the worker parses each document once, solves, and answers with
a `SolveOutcome` of JSON-ready documents: the plan, the solver's account, the
analysis and the explanation, all derived from the solve's own evaluation (no
second evaluation, no explanation computed in the request process). Engine
errors cross back as themselves (they pickle); anything else is a bug and crosses
back as the exception the pool reports.

A re-plan can be stopped: the reconcile pool shares a `latest_generation` counter
with its workers (set at process start, `init_worker`); a job for an older
generation stops as soon as a newer one is announced and returns its best plan
(`termination: "stopped"`).

A background improvement (`improve_job`) is a re-plan of the same generation,
warm-started from the plan just published and priced against it: it prices the
published plan for the same scenario (its own change cost is sunk: it is what
is live), solves, and sends back documents to publish only when the new plan is
worth it (`worth_publishing`); it is stopped by a newer generation like a
re-plan.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from app.engine import api
from app.engine.contracts import (
    AuditRequest,
    EvaluateRequest,
    ExactOptions,
    PlanAnalysis,
    SolveRequest,
    SolveResult,
    SolverOptions,
)
from app.engine.errors import EngineError

# Set in each reconcile worker by `init_worker`: the newest generation the service
# has announced (None in what-if workers: their jobs are never stopped).
_LATEST: Synchronized[int] | None = None


def init_worker(latest_generation: Synchronized[int] | None = None) -> None:
    """Pool-process initializer. A process group of its own lets the parent kill the
    worker together with any solver it started; ignoring SIGINT leaves Ctrl-C to
    the parent, which shuts the pool down in order."""
    global _LATEST
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _LATEST = latest_generation
    _exit_with_parent()


def _exit_with_parent() -> None:
    """Exit when the service process dies (kill -9 included). A pool worker holds
    both ends of its task queue, so it never sees EOF and would otherwise wait
    forever as an orphan."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def warm_up() -> bool:
    """A no-op task: makes the pool start its processes (and import the engine)."""
    return True


def plain(doc: Any) -> Any:
    """JSON round trip: numpy scalars become floats, NaN/inf become null."""
    text = json.dumps(doc, allow_nan=True, default=float)
    return json.loads(text, parse_constant=lambda _c: None)


@dataclass(frozen=True, slots=True)
class SolveJob:
    """One solve. `generation` is the spec generation it serves (None: a what-if,
    never stopped); `explain` asks for the explanation too."""

    spec: dict[str, Any]
    options: SolverOptions
    current_plan: dict[str, Any] | None = None
    generation: int | None = None
    explain: bool = True
    calibration: api.Calibration | None = None


@dataclass(frozen=True, slots=True)
class SolveOutcome:
    """What a solve sends back: JSON-ready documents."""

    plan: dict[str, Any]
    solver: dict[str, Any]
    analysis: dict[str, Any]
    explanation: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class _NewerGeneration:
    """The stop signal of a re-plan: a newer generation has been announced."""

    generation: int

    def is_set(self) -> bool:
        return _LATEST is not None and _LATEST.value > self.generation


def _live_plan(job: SolveJob) -> tuple[api.Plan | None, str | None]:
    """The plan to warm-start from and price changes against. A what-if's plan
    that does not parse is the caller's error; the live plan of a re-plan that does
    not (a plan stored by a buggy version, say) must not freeze the service: the
    re-plan then starts cold and says why (`solver.warm_start_refused`)."""
    if job.current_plan is None:
        return None, None
    try:
        return api.parse_plan(job.current_plan), None
    except EngineError as exc:
        if job.generation is None:
            raise
        return None, f"the live plan cannot be read ({exc}): planned from scratch"


def solve_job(job: SolveJob) -> SolveOutcome:
    """Parse the documents once, solve, and derive everything else from the
    solve's own evaluation (and, for the explanation, its candidate table)."""
    scenario = replace(api.parse_scenario(job.spec), calibration=job.calibration)
    current, refused = _live_plan(job)
    request = SolveRequest(scenario, job.options, current)
    stop = _NewerGeneration(job.generation) if job.generation is not None else None
    if job.explain:
        done = api.replan(request, stop=stop)
        result, explanation = done.result, done.explanation
        analysis = done.analysis
    else:
        result, explanation = api.solve(request, stop=stop), None
        analysis = PlanAnalysis.of(result.evaluation)
    extra = {"warm_start_refused": refused} if refused is not None else {}
    return _outcome(result, analysis, explanation, **extra)


def _outcome(
    result: SolveResult,
    analysis: PlanAnalysis,
    explanation: dict[str, Any] | None,
    **solver_extra: Any,
) -> SolveOutcome:
    """A solve's result as the JSON-ready documents the service stores."""
    doc = {**result.to_document(), **solver_extra}
    return SolveOutcome(
        plan=plain(doc.pop("plan")),
        solver=plain(doc),
        analysis=plain(analysis.to_document()),
        explanation=plain(explanation) if explanation is not None else None,
    )


@dataclass(frozen=True, slots=True)
class ImproveJob:
    """A background improvement: `solve.current_plan` is the published plan (the
    warm start, and what the change cost is priced against), `solve.generation`
    the generation it was made for. The thresholds: see `saving_threshold`."""

    solve: SolveJob
    min_saving_usd: float = 0.0
    min_saving_fraction: float = 0.0


@dataclass(frozen=True, slots=True)
class ImproveOutcome:
    """What an improvement sends back. `baseline`: the published plan's objective
    for the same scenario with itself live (no change cost); `objective`: the new
    plan's, the change cost from the published plan included; `outcome`: the
    documents to publish, set only when the plan is worth publishing."""

    baseline: float
    baseline_feasible: bool
    objective: float
    feasible: bool
    threshold: float
    termination: str
    outcome: SolveOutcome | None

    @property
    def saving(self) -> float:
        """$ per policy horizon saved by switching from the published plan."""
        return self.baseline - self.objective


def saving_threshold(baseline: float, min_saving_usd: float, min_saving_fraction: float) -> float:
    """How much an improvement must save to be published: the larger of an absolute
    floor and a share of the published plan's objective."""
    return max(min_saving_usd, min_saving_fraction * abs(baseline))


def worth_publishing(
    baseline_feasible: bool, feasible: bool, saving: float, threshold: float, termination: str
) -> bool:
    """Publish a stopped solve never (a newer generation is waiting); an infeasible
    plan never; a feasible plan in place of a published one that breaks constraints
    always (the engine ranks feasibility first); otherwise only if it saves more
    than the threshold, its change cost included (so never a worse plan)."""
    if termination == "stopped" or not feasible:
        return False
    return not baseline_feasible or saving > threshold


def improve_job(job: ImproveJob) -> ImproveOutcome:
    """Price the published plan, improve on it, and explain the result only if it
    will be published (one candidate table, as in `solve_job`)."""
    s = job.solve
    if s.current_plan is None or s.generation is None:
        raise ValueError("an improvement needs the published plan and its generation")
    scenario = replace(api.parse_scenario(s.spec), calibration=s.calibration)
    published = api.parse_plan(s.current_plan)
    base = api.evaluate(EvaluateRequest(scenario, published, published))
    threshold = saving_threshold(base.objective, job.min_saving_usd, job.min_saving_fraction)

    def worth(result: SolveResult) -> bool:
        return worth_publishing(
            base.feasible,
            result.evaluation.feasible,
            base.objective - result.objective,
            threshold,
            result.termination,
        )

    request = SolveRequest(scenario, s.options, published)
    done = api.replan(request, stop=_NewerGeneration(s.generation), explain_if=worth)
    result = done.result
    outcome = None
    if done.explanation is not None:
        outcome = _outcome(result, done.analysis, done.explanation)
    return ImproveOutcome(
        baseline=base.objective,
        baseline_feasible=base.feasible,
        objective=result.objective,
        feasible=result.evaluation.feasible,
        threshold=threshold,
        termination=result.termination,
        outcome=outcome,
    )


def explain_job(spec: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """The explanation of a stored plan that was published without one."""
    doc: dict[str, Any] = plain(api.explain(api.parse_scenario(spec), api.parse_plan(plan)))
    return doc


def audit_child(
    conn: Connection,
    cancel: MpEvent,
    spec: dict[str, Any],
    plan: dict[str, Any] | None,
    time_limit_s: float,
    options: ExactOptions,
    calibration: api.Calibration | None = None,
) -> None:
    """Entry point of an audit process: runs the MILP audit and sends one message,
    `("ok", result document)` or `("error", exception)`. A watcher thread turns the
    parent's cross-process cancel into the threading.Event the engine understands
    (it then kills the solver within 1 s). It also cancels if the parent dies
    (kill -9): an orphaned audit would otherwise keep the solver busy until its
    time limit."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    local_cancel = threading.Event()
    parent = os.getppid()

    def watch() -> None:
        while not cancel.wait(0.5):
            if os.getppid() != parent:
                break
        local_cancel.set()

    threading.Thread(target=watch, daemon=True, name="cancel-watch").start()
    try:
        request = AuditRequest(
            replace(api.parse_scenario(spec), calibration=calibration),
            api.parse_plan(plan) if plan is not None else None,
            time_limit_s,
            options,
        )
        msg: tuple[str, Any] = ("ok", plain(api.audit(request, local_cancel).to_document()))
    except EngineError as exc:  # picklable: the parent maps it (an input error: 422)
        msg = ("error", exc)
    except Exception as exc:  # a bug: its description, not the object (it may not pickle)
        msg = ("error", RuntimeError(f"{type(exc).__name__}: {exc}"))
    try:
        conn.send(msg)
    except (BrokenPipeError, EOFError):  # the service is gone (killed): nobody to tell
        pass
    finally:
        conn.close()
