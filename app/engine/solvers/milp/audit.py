"""Solving the §1 MILP (`solve_milp`) and auditing a plan against it (`audit`):
build the model, write it, run a backend under a hard wall-clock limit with the
warm start as its first incumbent, read the solution back into a `Plan` and let
the one evaluator price and check it.

Why the solver stopped (`termination`) is reported apart from what it returned
(`solution_status`); a time-limited incumbent is `time_limit` / `feasible`,
never optimal. The audited plan's certified gap is (its cost − proven bound) /
its cost.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack, cast

from app.engine.contracts import json_number, relative_gap
from app.engine.model.domain import Scenario
from app.engine.perf.profiles import EngineProfile
from app.engine.plan.candidates import CandidateTable, candidate_table
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.evaluation import Evaluation, plan_document
from app.engine.plan.plan import Plan
from app.engine.solvers.milp.backends import BACKENDS, backend_version, run_backend
from app.engine.solvers.milp.backends.outcome import SolverOutcome
from app.engine.solvers.milp.backends.process import CancelSignal
from app.engine.solvers.milp.model import (
    MilpModel,
    build_model,
    read_solution,
    solution_to_plan,
    write_lp,
    write_mipstart,
)

MilpTermination = Literal["optimal", "time_limit", "infeasible", "unbounded", "cancelled", "error"]
MilpStatus = Literal["optimal", "feasible", "none"]


# --------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class MilpResult:
    """Outcome of an exact solve. `termination` says why the solver stopped,
    `solution_status` what it returned; `objective` is the evaluator's cost of the
    extracted plan (`solver_objective` is the solver's own figure, for reference);
    `bound` the best proven lower bound. A time-limited incumbent is termination
    `time_limit`, status `feasible`, never optimal. For an audit, `certified_gap`
    is the reference plan's (cost − bound) / cost."""

    termination: MilpTermination
    solution_status: MilpStatus
    objective: float | None
    solver_objective: float | None
    bound: float | None
    relative_gap: float | None
    wall_s: float
    solver: str
    solver_version: str
    plan: Plan | None
    evaluation: Evaluation | None
    feasible: bool
    reference_cost: float | None = None
    reference_feasible: bool | None = None
    certified_gap: float | None = None
    warm_start_used: bool = False
    time_limit_s: float = 0.0
    relative_gap_target: float = 1e-4
    threads: int = 1
    build_s: float = 0.0
    solve_s: float = 0.0
    candidates: int = 0
    variables: int = 0
    constraints: int = 0
    message: str = ""

    def to_document(self) -> dict[str, Any]:
        doc = {
            f.name: json_number(getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("plan", "evaluation")
        }
        doc["plan"] = (
            plan_document(self.plan, self.evaluation)
            if self.plan is not None and self.evaluation is not None
            else None
        )
        doc["evaluation"] = self.evaluation.to_document() if self.evaluation else None
        return doc


def _message(termination: str, outcome: SolverOutcome | None) -> str:
    said = outcome.message if outcome is not None else ""
    if termination == "infeasible":
        return (
            "infeasible: no plan meets every constraint (allow unmet demand, or raise "
            f"availability, budget or storage); solver: {said}"
        )
    return said


# --------------------------------------------------------------------------------------
# Public entry points


class MilpOptions(TypedDict, total=False):
    """The keyword options `solve_milp` shares with `audit`."""

    relative_gap: float
    threads: int
    cancel: CancelSignal | None
    backend: str
    current: Plan | None
    warm_start: Plan | None
    table: CandidateTable | None
    profile: EngineProfile | None
    on_process: Callable[[Any], None] | None


def solve_milp(
    scenario: Scenario, time_limit_s: float, **options: Unpack[MilpOptions]
) -> MilpResult:
    """Solve the §1 MILP: `audit` with no reference plan (same options).
    `time_limit_s` bounds the whole call (model building included): the solver
    gets what remains and is killed `GRACE_S` after the limit whatever it is
    doing. `cancel` kills it within a second. `current` is the live plan (change
    cost); `warm_start` a plan handed to the solver as its first incumbent.
    `on_process` receives the solver's Popen (for tests)."""
    return audit(scenario, None, time_limit_s, **options)


def audit(
    scenario: Scenario,
    reference: Plan | None,
    time_limit_s: float,
    relative_gap: float = 1e-4,
    threads: int = 1,
    cancel: CancelSignal | None = None,
    backend: str = "cbc",
    current: Plan | None = None,
    warm_start: Plan | None = None,
    table: CandidateTable | None = None,
    profile: EngineProfile | None = None,
    on_process: Callable[[Any], None] | None = None,
) -> MilpResult:
    """Exact audit of a reference plan (e.g. the live AGH plan): solve the MILP and
    report the reference's evaluator cost and its certified gap to the proven
    bound, `(cost_ref − bound) / cost_ref`. Unless `warm_start` is given, a
    feasible reference is the solver's warm start (its first incumbent), so even a
    time-limited audit returns a plan no worse than the reference."""
    call = _Call(scenario, time_limit_s, relative_gap, threads, backend, current, profile)
    return _run(call, reference, cancel, warm_start, table, on_process)


@dataclass
class _Call:
    """One exact solve: its inputs, and how to turn what happened into a result."""

    scenario: Scenario
    time_limit_s: float
    relative_gap: float
    threads: int
    backend: str
    current: Plan | None
    profile: EngineProfile | None
    t0: float = field(default_factory=time.monotonic)
    reference_cost: float | None = None
    reference_feasible: bool | None = None
    solver: str = ""
    version: str = ""

    def evaluate(self, plan: Plan) -> Evaluation:
        return evaluate_plan(self.scenario, plan, current=self.current, profile=self.profile)

    def finish(
        self,
        termination: MilpTermination,
        outcome: SolverOutcome | None = None,
        plan: Plan | None = None,
        ev: Evaluation | None = None,
        mm: MilpModel | None = None,
        build_s: float = 0.0,
        message: str = "",
    ) -> MilpResult:
        bound = outcome.bound if outcome is not None else None
        if termination in ("infeasible", "unbounded", "error"):
            bound = None  # whatever the log printed last is not a bound on anything
        if outcome is not None and outcome.has_solution and outcome.objective is not None:
            # A lower bound never exceeds the solver's own incumbent value; without
            # a bound, only a proven optimum is one (a solver stopped before its
            # root relaxation proves nothing about its incumbent).
            if bound is not None:
                bound = min(bound, outcome.objective)
            elif termination == "optimal":
                bound = outcome.objective
        objective = ev.cost.total if ev is not None else None
        status: MilpStatus = (
            "none" if plan is None else "optimal" if termination == "optimal" else "feasible"
        )
        ref = self.reference_cost
        return MilpResult(
            termination=termination,
            solution_status=status,
            objective=objective,
            solver_objective=outcome.objective if outcome is not None else None,
            bound=bound,
            relative_gap=relative_gap(objective, bound)
            if objective is not None and bound is not None
            else None,
            wall_s=time.monotonic() - self.t0,
            solver=self.solver,
            solver_version=self.version,
            plan=plan,
            evaluation=ev,
            feasible=bool(ev is not None and ev.feasible),
            reference_cost=ref,
            reference_feasible=self.reference_feasible,
            certified_gap=relative_gap(ref, bound)
            if ref is not None and bound is not None
            else None,
            warm_start_used=bool(outcome is not None and outcome.mipstart_used),
            time_limit_s=self.time_limit_s,
            relative_gap_target=self.relative_gap,
            threads=self.threads,
            build_s=build_s,
            solve_s=outcome.wall_s if outcome is not None else 0.0,
            candidates=mm.table.size if mm is not None else 0,
            variables=mm.n_vars if mm is not None else 0,
            constraints=mm.n_constraints if mm is not None else 0,
            message=message or _message(termination, outcome),
        )


def _run(
    call: _Call,
    reference: Plan | None,
    cancel: CancelSignal | None,
    warm_start: Plan | None,
    table: CandidateTable | None,
    on_process: Callable[[Any], None] | None,
) -> MilpResult:
    if call.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {call.backend!r}")
    if not (call.time_limit_s > 0 and math.isfinite(call.time_limit_s)):
        raise ValueError("time_limit_s must be a positive finite number")
    deadline = call.t0 + call.time_limit_s
    call.solver, call.version = call.backend, backend_version(call.backend)
    if reference is not None:
        ref_eval = call.evaluate(reference)
        call.reference_cost, call.reference_feasible = ref_eval.cost.total, ref_eval.feasible
        if warm_start is None and ref_eval.feasible:
            warm_start = reference
    if cancel is not None and cancel.is_set():
        return call.finish("cancelled", message="cancelled before the solver started")
    if table is None:
        table = candidate_table(call.scenario, call.profile)
    mm = build_model(table, current=call.current)
    with tempfile.TemporaryDirectory(prefix="llm-allocator-milp-") as tmp:
        wm = write_lp(mm, Path(tmp) / "model.lp")
        build_s = time.monotonic() - call.t0
        if cancel is not None and cancel.is_set():
            return call.finish(
                "cancelled", mm=mm, build_s=build_s, message="cancelled while building"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            return call.finish(
                "time_limit",
                mm=mm,
                build_s=build_s,
                message=f"time limit spent building the model ({build_s:.2f} s)",
            )
        mipstart = None
        if warm_start is not None and write_mipstart(mm, wm, warm_start, Path(tmp) / "start.sol"):
            mipstart = Path(tmp) / "start.sol"
        outcome = run_backend(
            call.backend,
            wm.path,
            remaining,
            call.relative_gap,
            call.threads,
            cancel,
            mipstart,
            deadline,
            on_process,
        )
        call.solver = outcome.solver or call.backend
        call.version = outcome.version or call.version
        # A cancelled or time-limited solver's incumbent is kept (never lost).
        sol = read_solution(mm, wm, outcome.values) if outcome.has_solution else None
    if sol is None:
        return _without_solution(call, outcome, warm_start, mm, build_s)
    plan = solution_to_plan(mm, sol)
    term = cast(MilpTermination, outcome.termination)
    return call.finish(term, outcome, plan, call.evaluate(plan), mm, build_s)


def _without_solution(
    call: _Call,
    outcome: SolverOutcome,
    warm_start: Plan | None,
    mm: MilpModel,
    build_s: float,
) -> MilpResult:
    """The solver returned no values. If it was stopped (limit or cancel) after
    accepting the warm start as its incumbent, that plan is the best we hold:
    return it."""
    if (
        outcome.termination in ("time_limit", "cancelled")
        and outcome.mipstart_used
        and warm_start is not None
    ):
        ev = call.evaluate(warm_start)
        if ev.feasible:
            return call.finish(
                cast(MilpTermination, outcome.termination),
                outcome,
                warm_start,
                ev,
                mm,
                build_s,
                message=outcome.message + "; returning the warm start (the solver's "
                "accepted incumbent)",
            )
    term = cast(MilpTermination, outcome.termination)
    return call.finish(term, outcome, mm=mm, build_s=build_s)
