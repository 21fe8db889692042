"""One entry point for every planner: GH, AGH and the exact MILP.

Whatever the algorithm, the returned plan is priced and checked by the one
evaluator; the solver's own numbers are never reported as the plan's cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from app.engine.model.domain import Scenario
from app.engine.perf.model import DEFAULT_PROFILE, EngineProfile
from app.engine.plan.candidates import candidate_table
from app.engine.plan.evaluate import Evaluation, evaluate_plan, plan_document
from app.engine.plan.plan import Plan
from app.engine.solvers.agh import agh
from app.engine.solvers.greedy import Mechanisms, greedy

Algorithm = Literal["gh", "agh", "milp"]
ALGORITHMS: tuple[str, ...] = ("gh", "agh", "milp")


@dataclass(frozen=True)
class SolveOutcome:
    algorithm: str
    plan: Plan
    evaluation: Evaluation
    scenario: Scenario
    termination: str  # gh: "completed"; agh: "converged" | "deadline"; milp: its termination
    wall_s: float
    iterations: int
    starts: int
    warm_start_used: bool
    seed: int
    time_budget_s: float
    time_to_best_s: float
    candidates: int
    extra: dict[str, Any] | None = None  # MILP: bound, gap, solver, solution_status

    @property
    def objective(self) -> float:
        return self.evaluation.objective

    def to_document(self) -> dict[str, Any]:
        doc = {
            "algorithm": self.algorithm,
            "plan": plan_document(self.scenario, self.plan, self.evaluation),
            "objective": self.objective,
            "termination": self.termination,
            "wall_s": self.wall_s,
            "time_to_best_s": self.time_to_best_s,
            "iterations": self.iterations,
            "starts": self.starts,
            "warm_start_used": self.warm_start_used,
            "seed": self.seed,
            "time_budget_s": self.time_budget_s,
            "candidates": self.candidates,
        }
        if self.extra:
            doc["milp"] = self.extra
        return doc


def solve(
    scenario: Scenario,
    algorithm: str = "agh",
    time_budget_s: float = 1.0,
    seed: int = 0,
    current: Plan | None = None,
    mechanisms: Mechanisms = Mechanisms(),
    profile: EngineProfile = DEFAULT_PROFILE,
    max_starts: int | None = None,
) -> SolveOutcome:
    """Plan for `scenario`. `current` is the live plan: AGH warm-starts from it and
    every algorithm prices the change cost against it."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, not {algorithm!r}")
    t0 = time.monotonic()
    table = candidate_table(scenario, profile)
    if algorithm == "milp":
        from app.engine.solvers.milp.audit import solve_milp

        # GH's plan is CBC's first incumbent, so a time-limited solve still returns
        # a plan; the MILP's answer is reported whatever it is (never relabelled).
        warm = greedy(table, mech=mechanisms, current=current).to_plan()
        res = solve_milp(
            scenario,
            time_limit_s=max(0.1, time_budget_s - (time.monotonic() - t0)),
            current=current,
            table=table,
            warm_start=warm,
        )
        # No solution (infeasible, or the limit hit before a first incumbent): an
        # all-unmet plan, so the reported cost is what serving nothing would cost.
        plan = res.plan or Plan.build([], [], {q.id: 1.0 for q in scenario.query_types})
        ev = res.evaluation or evaluate_plan(scenario, plan, current=current, profile=profile)
        wall = time.monotonic() - t0
        extra = {k: v for k, v in res.to_document().items() if k not in ("plan", "evaluation")}
        return SolveOutcome(
            "milp",
            plan,
            ev,
            scenario,
            res.termination,
            wall,
            0,
            1,
            res.warm_start_used,
            seed,
            time_budget_s,
            wall,
            table.size,
            extra=extra,
        )
    if algorithm == "gh":
        st = greedy(table, mech=mechanisms, current=current)
        termination, iterations, starts, warm_used = "completed", 0, 1, False
        time_to_best = None
    else:
        t_search = time.monotonic()
        st, stats = agh(
            table,
            time_budget_s=max(0.0, time_budget_s - (t_search - t0)),
            seed=seed,
            mech=mechanisms,
            current=current,
            max_starts=max_starts,
        )
        termination, iterations, starts = stats.termination, stats.iterations, stats.starts
        warm_used = stats.warm_start_used
        time_to_best = (t_search - t0) + stats.time_to_best_s
    plan = st.to_plan()
    ev = evaluate_plan(scenario, plan, current=current, profile=profile)
    wall = time.monotonic() - t0
    return SolveOutcome(
        algorithm,
        plan,
        ev,
        scenario,
        termination,
        wall,
        iterations,
        starts,
        warm_used,
        seed,
        time_budget_s,
        wall if time_to_best is None else time_to_best,
        table.size,
    )
