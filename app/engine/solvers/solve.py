"""One entry point for every planner: GH, AGH and the exact MILP.

Whatever the algorithm, the returned plan is priced and checked by the one
evaluator; the solver's own numbers are never reported as the plan's cost. The
result is a `SolveResult` (app.engine.contracts): why the solver stopped
(`termination`) apart from what it returned (`status`), the best bound known.
"""

from __future__ import annotations

import time

from app.engine.contracts import (
    ALGORITHMS,
    ExactInfo,
    SolveResult,
    SolverOptions,
    Termination,
    relative_gap,
    status_of,
)
from app.engine.model.domain import Scenario
from app.engine.perf.profiles import EngineProfile
from app.engine.plan.candidates import CandidateTable, candidate_table
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.plan import Plan
from app.engine.solvers.anytime import plan_anytime
from app.engine.solvers.gh import gh
from app.engine.solvers.greedy import Mechanisms, greedy
from app.engine.solvers.milp.audit import MilpResult, solve_milp
from app.engine.solvers.search import StopSignal


def solve(
    scenario: Scenario,
    algorithm: str = "agh",
    time_budget_s: float = 1.0,
    seed: int = 0,
    current: Plan | None = None,
    mechanisms: Mechanisms = Mechanisms(),
    profile: EngineProfile | None = None,
    max_starts: int | None = None,
    table: CandidateTable | None = None,
    options: SolverOptions | None = None,
    stop: StopSignal | None = None,
    polish: str | None = "auto",
) -> SolveResult:
    """Plan for `scenario` with `options` (or the loose arguments, for scripts).
    `current` is the live plan: AGH warm-starts from it and every algorithm
    prices the change cost against it. `table` reuses a candidate table already
    built for this scenario; `stop` ends AGH and its polish at once with the
    best plan so far (termination "stopped"), and cancels the MILP. `polish`:
    AGH's exact polish backend ("auto": HiGHS when installed, else CBC;
    "highs", "cbc"; None: AGH alone). AGH's `bound` is valid for the full
    problem: the full MILP's dual bound or the full LP relaxation's optimum
    (`bound_source`), never a restricted model's; when it proves the plan
    optimal (within `relative_gap`) the status says "optimal". Over 80 lines:
    the three algorithms' answers are assembled into one result side by side."""
    if options is None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, not {algorithm!r}")
        options = SolverOptions(
            algorithm=algorithm,
            time_budget_s=time_budget_s,
            seed=seed,
            max_starts=max_starts,
        )
    t0 = time.monotonic()
    if table is None:
        table = candidate_table(scenario, profile)
    if options.algorithm == "milp":
        return _solve_exact(scenario, options, current, table, mechanisms, profile, t0, stop)
    bound: float | None = None
    bound_source: str | None = None
    if options.algorithm == "gh":
        st, _ = gh(table, mech=mechanisms, current=current, stop=stop)
        termination: Termination = "completed"
        iterations, starts, warm_used = 0, 1, False
        time_to_best = None
    else:
        t_search = time.monotonic()
        res = plan_anytime(
            table,
            time_budget_s=max(0.0, options.time_budget_s - (t_search - t0)),
            seed=options.seed,
            mech=mechanisms,
            current=current,
            max_starts=options.max_starts,
            stop=stop,
            polish_with=polish,
            gap=options.relative_gap,
        )
        st, termination = res.state, res.termination
        iterations, starts = res.iterations, res.starts
        # The polish and LNS start from AGH's best: the plan descends from the
        # warm start whenever AGH's best did.
        warm_used = res.stats.warm_start_used
        time_to_best = (t_search - t0) + res.time_to_best_s
        if res.polish is not None:
            bound, bound_source = res.polish.bound, res.polish.bound_source
    plan = st.to_plan()
    ev = evaluate_plan(scenario, plan, current=current, profile=profile)
    wall = time.monotonic() - t0
    return SolveResult(
        algorithm=options.algorithm,
        termination=termination,
        status=status_of(ev, proven_optimal=termination == "converged" and bound is not None),
        plan=plan,
        evaluation=ev,
        bound=bound,
        gap=relative_gap(ev.objective, bound) if bound is not None else None,
        wall_s=wall,
        time_to_best_s=wall if time_to_best is None else time_to_best,
        iterations=iterations,
        starts=starts,
        warm_start_used=warm_used,
        seed=options.seed,
        time_budget_s=options.time_budget_s,
        candidates=table.size,
        bound_source=bound_source,
    )


def _solve_exact(
    scenario: Scenario,
    options: SolverOptions,
    current: Plan | None,
    table: CandidateTable,
    mechanisms: Mechanisms,
    profile: EngineProfile | None,
    t0: float,
    stop: StopSignal | None,
) -> SolveResult:
    """The MILP, warm-started from GH's plan so that a time-limited solve still
    returns a plan; its answer is reported whatever it is (never relabelled)."""
    warm = greedy(table, mech=mechanisms, current=current).to_plan()
    res = solve_milp(
        scenario,
        time_limit_s=max(0.1, options.time_budget_s - (time.monotonic() - t0)),
        relative_gap=options.relative_gap,
        threads=options.threads,
        backend=options.backend,
        cancel=stop,
        current=current,
        table=table,
        warm_start=warm,
        profile=profile,
    )
    # No solution (infeasible, or the limit hit before a first incumbent): an
    # all-unmet plan, so the reported cost is what serving nothing would cost.
    plan = res.plan or Plan.build([], [], {q.id: 1.0 for q in scenario.query_types})
    ev = res.evaluation or evaluate_plan(scenario, plan, current=current, profile=profile)
    wall = time.monotonic() - t0
    return SolveResult(
        algorithm="milp",
        termination=res.termination,
        status=status_of(ev, proven_optimal=res.solution_status == "optimal")
        if res.plan is not None
        else "none",
        plan=plan,
        evaluation=ev,
        bound=res.bound,
        gap=relative_gap(ev.objective, res.bound) if res.bound is not None else None,
        wall_s=wall,
        time_to_best_s=wall,
        iterations=0,
        starts=1,
        warm_start_used=res.warm_start_used,
        seed=options.seed,
        time_budget_s=options.time_budget_s,
        candidates=table.size,
        exact=exact_info(res),
        bound_source="milp" if res.bound is not None else None,
    )


def exact_info(res: MilpResult) -> ExactInfo:
    return ExactInfo(
        solver=res.solver,
        solver_version=res.solver_version,
        solver_objective=res.solver_objective,
        relative_gap_target=res.relative_gap_target,
        threads=res.threads,
        build_s=res.build_s,
        solve_s=res.solve_s,
        variables=res.variables,
        constraints=res.constraints,
        message=res.message,
    )
