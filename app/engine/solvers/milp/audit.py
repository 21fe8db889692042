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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.engine.model.domain import Scenario
from app.engine.perf.model import DEFAULT_PROFILE, EngineProfile
from app.engine.plan.candidates import CandidateTable, candidate_table
from app.engine.plan.evaluate import Evaluation, evaluate_plan, plan_document
from app.engine.plan.plan import Plan
from app.engine.solvers.milp.backends import BACKENDS, backend_version, run_backend
from app.engine.solvers.milp.backends.outcome import SolverOutcome
from app.engine.solvers.milp.model import (
    MilpModel,
    build_model,
    read_solution,
    solution_to_plan,
    write_lp,
    write_mipstart,
)

Termination = Literal["optimal", "time_limit", "infeasible", "unbounded", "cancelled", "error"]
SolutionStatus = Literal["optimal", "feasible", "none"]


# --------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class MilpResult:
    """Outcome of an exact solve. `termination` says why the solver stopped,
    `solution_status` what it returned; `objective` is the evaluator's cost of the
    extracted plan (`solver_objective` is the solver's own figure, for reference);
    `bound` the best proven lower bound. A time-limited incumbent is termination
    `time_limit`, status `feasible`, never optimal."""

    termination: str
    solution_status: str
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
    scenario: Scenario = field(repr=False)
    reference_cost: float | None = None
    reference_feasible: bool | None = None
    reference_gap: float | None = None
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
        return {
            "termination": self.termination,
            "solution_status": self.solution_status,
            "objective": _json_num(self.objective),
            "solver_objective": _json_num(self.solver_objective),
            "bound": _json_num(self.bound),
            "relative_gap": _json_num(self.relative_gap),
            "feasible": self.feasible,
            "reference_cost": _json_num(self.reference_cost),
            "reference_feasible": self.reference_feasible,
            "reference_gap": _json_num(self.reference_gap),
            "wall_s": self.wall_s,
            "build_s": self.build_s,
            "solve_s": self.solve_s,
            "solver": self.solver,
            "solver_version": self.solver_version,
            "warm_start_used": self.warm_start_used,
            "time_limit_s": self.time_limit_s,
            "relative_gap_target": self.relative_gap_target,
            "threads": self.threads,
            "candidates": self.candidates,
            "variables": self.variables,
            "constraints": self.constraints,
            "message": self.message,
            "plan": (
                plan_document(self.scenario, self.plan, self.evaluation)
                if self.plan is not None and self.evaluation is not None
                else None
            ),
            "evaluation": self.evaluation.to_document() if self.evaluation is not None else None,
        }


def _message(termination: str, outcome: SolverOutcome | None) -> str:
    said = outcome.message if outcome is not None else ""
    if termination == "infeasible":
        return (
            "infeasible: no plan meets every constraint (allow unmet demand, or raise "
            f"availability, budget or storage); solver: {said}"
        )
    return said


def _json_num(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _gap(cost: float, bound: float) -> float:
    """Relative gap (cost − bound)/|cost|, 0 when both are ~0, never negative."""
    if abs(cost) < 1e-9:
        return 0.0 if bound >= cost - 1e-9 else math.inf
    return max(0.0, (cost - bound) / abs(cost))


# --------------------------------------------------------------------------------------
# Public entry points


def solve_milp(
    scenario: Scenario,
    time_limit_s: float,
    relative_gap: float = 1e-4,
    threads: int = 1,
    cancel: threading.Event | None = None,
    backend: str = "cbc",
    current: Plan | None = None,
    warm_start: Plan | None = None,
    table: CandidateTable | None = None,
    profile: EngineProfile = DEFAULT_PROFILE,
    on_process: Callable[[Any], None] | None = None,
) -> MilpResult:
    """Solve the §1 MILP. `time_limit_s` bounds the whole call (model building
    included): the solver gets what remains and is killed `GRACE_S` after the
    limit whatever it is doing. `cancel` kills it within a second. `current` is
    the live plan (change cost); `warm_start` a plan handed to the solver as its
    first incumbent. `on_process` receives the solver's Popen (for tests)."""
    return _run(
        scenario,
        None,
        time_limit_s,
        relative_gap,
        threads,
        cancel,
        backend,
        current,
        warm_start,
        table,
        profile,
        on_process,
    )


def audit(
    scenario: Scenario,
    reference: Plan | None,
    time_limit_s: float,
    relative_gap: float = 1e-4,
    threads: int = 1,
    cancel: threading.Event | None = None,
    backend: str = "cbc",
    current: Plan | None = None,
    warm_start: Plan | None = None,
    table: CandidateTable | None = None,
    profile: EngineProfile = DEFAULT_PROFILE,
    on_process: Callable[[Any], None] | None = None,
) -> MilpResult:
    """Exact audit of a reference plan (e.g. the live AGH plan): solve the MILP and
    report the reference's evaluator cost and its certified gap to the proven
    bound, `(cost_ref − bound) / cost_ref`. Unless `warm_start` is given, a
    feasible reference is the solver's warm start (its first incumbent), so even a
    time-limited audit returns a plan no worse than the reference."""
    return _run(
        scenario,
        reference,
        time_limit_s,
        relative_gap,
        threads,
        cancel,
        backend,
        current,
        warm_start,
        table,
        profile,
        on_process,
    )


def _run(
    scenario: Scenario,
    reference: Plan | None,
    time_limit_s: float,
    relative_gap: float,
    threads: int,
    cancel: threading.Event | None,
    backend: str,
    current: Plan | None,
    warm_start: Plan | None,
    table: CandidateTable | None,
    profile: EngineProfile,
    on_process: Callable[[Any], None] | None,
) -> MilpResult:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if not (time_limit_s > 0 and math.isfinite(time_limit_s)):
        raise ValueError("time_limit_s must be a positive finite number")
    t0 = time.monotonic()
    deadline = t0 + time_limit_s
    solver_name = backend
    version = backend_version(backend)

    ref_cost = ref_feasible = ref_eval = None
    if reference is not None:
        ref_eval = evaluate_plan(scenario, reference, current=current, profile=profile)
        ref_cost, ref_feasible = ref_eval.cost.total, ref_eval.feasible
        if warm_start is None and ref_feasible:
            warm_start = reference

    def finish(
        termination: str,
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
        objective = ev.cost.total if ev is not None else None
        if plan is None:
            status = "none"
        elif termination == "optimal":
            status = "optimal"
        else:
            status = "feasible"
        if outcome is not None and outcome.has_solution and outcome.objective is not None:
            # A lower bound never exceeds the solver's own incumbent value.
            bound = outcome.objective if bound is None else min(bound, outcome.objective)
        gap = _gap(objective, bound) if objective is not None and bound is not None else None
        ref_gap = _gap(ref_cost, bound) if ref_cost is not None and bound is not None else None
        return MilpResult(
            termination=termination,
            solution_status=status,
            objective=objective,
            solver_objective=outcome.objective if outcome is not None else None,
            bound=bound,
            relative_gap=gap,
            wall_s=time.monotonic() - t0,
            solver=solver_name,
            solver_version=version,
            plan=plan,
            evaluation=ev,
            feasible=bool(ev is not None and ev.feasible),
            scenario=scenario,
            reference_cost=ref_cost,
            reference_feasible=ref_feasible,
            reference_gap=ref_gap,
            warm_start_used=bool(outcome is not None and outcome.mipstart_used),
            time_limit_s=time_limit_s,
            relative_gap_target=relative_gap,
            threads=threads,
            build_s=build_s,
            solve_s=outcome.wall_s if outcome is not None else 0.0,
            candidates=mm.table.size if mm is not None else 0,
            variables=mm.n_vars if mm is not None else 0,
            constraints=mm.n_constraints if mm is not None else 0,
            message=message or _message(termination, outcome),
        )

    if cancel is not None and cancel.is_set():
        return finish("cancelled", message="cancelled before the solver started")
    if table is None:
        table = candidate_table(scenario, profile)
    mm = build_model(table, current=current)
    with tempfile.TemporaryDirectory(prefix="llm-allocator-milp-") as tmp:
        wm = write_lp(mm, Path(tmp) / "model.lp")
        build_s = time.monotonic() - t0
        if cancel is not None and cancel.is_set():
            return finish("cancelled", mm=mm, build_s=build_s, message="cancelled while building")
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            return finish(
                "time_limit",
                mm=mm,
                build_s=build_s,
                message=f"time limit spent building the model ({build_s:.2f} s)",
            )
        mipstart = None
        if warm_start is not None and write_mipstart(mm, wm, warm_start, Path(tmp) / "start.sol"):
            mipstart = Path(tmp) / "start.sol"
        outcome = run_backend(
            backend,
            wm.path,
            remaining,
            relative_gap,
            threads,
            cancel,
            mipstart,
            deadline,
            on_process,
        )
        solver_name = outcome.solver or backend
        version = outcome.version or version
        if outcome.has_solution and outcome.termination != "cancelled":
            sol = read_solution(mm, wm, outcome.values)
        else:
            sol = None
    if sol is None:
        if outcome.termination == "time_limit" and outcome.mipstart_used and warm_start is not None:
            # Killed before writing its solution file: the warm start, which the
            # solver had accepted as an incumbent, is the best plan we hold.
            ev = evaluate_plan(scenario, warm_start, current=current, profile=profile)
            if ev.feasible:
                return finish(
                    "time_limit",
                    outcome,
                    warm_start,
                    ev,
                    mm,
                    build_s,
                    message=outcome.message + "; returning the warm start (the solver's "
                    "accepted incumbent)",
                )
        return finish(outcome.termination, outcome, mm=mm, build_s=build_s)
    plan = solution_to_plan(mm, sol)
    ev = evaluate_plan(scenario, plan, current=current, profile=profile)
    return finish(outcome.termination, outcome, plan, ev, mm, build_s)
