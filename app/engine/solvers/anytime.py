"""How AGH spends its time budget (SPEC §4.1 "Quality in the budget"):

1. AGH's multi-start search (`agh.agh`) for a share of the budget
   (`AGH_SHARE`; the whole budget in deterministic mode, where it stops at its
   start limit), keeping its best distinct plans;
2. the exact polish (`polish.polish`) in the time that remains: restricted MILPs
   around those plans, then the full MILP or its LP relaxation, each from the
   best plan so far — it supplies the bound (valid for the full problem);
3. if time still remains and nothing proved the plan optimal, AGH's large-
   neighbourhood search (`lns.lns`) from the best plan until the deadline.

The polish's solver process starts at the beginning (HiGHS's import overlaps
the search). Everything checks `stop` and the deadline; the whole call ends
within the budget plus the solver's kill grace (`highs_session.KILL_GRACE_S`).

Termination: "converged" when the full MILP proved the plan optimal (within the
relative gap); "completed" when the deterministic start limit ended the search
and the polish stages all finished; "stopped" when `stop` was set; "deadline"
otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.engine.contracts import Termination
from app.engine.plan.candidates import CandidateTable
from app.engine.plan.plan import Plan
from app.engine.solvers.agh import SearchStats, agh
from app.engine.solvers.greedy import Mechanisms
from app.engine.solvers.lns import lns
from app.engine.solvers.polish import PolishResult, StageRunner, open_runner, polish, polish_backend
from app.engine.solvers.search import StopSignal
from app.engine.solvers.state import AllocationState

# AGH's share of the budget before the polish starts (tuned on the `scarce` and
# `accuracy_mix` families: bench/results/compare.md), at most AGH_MAX_S seconds.
AGH_SHARE = 0.45
AGH_MAX_S = 2.0
# AGH hands over to the polish after this share of its time when all its plans
# so far break a constraint.
INFEASIBLE_CUTOFF = 0.4
# The polish ends this long before the deadline: the plan still has to be built
# and priced (~25 ms at 200 query types).
END_MARGIN_S = 0.04
# Below this budget the polish is not started (its process would not be ready).
MIN_POLISH_BUDGET_S = 0.3
# While the solver process starts, LNS runs in slices this long.
READY_POLL_S = 0.03
# Deterministic mode: node limit of each polish stage.
DETERMINISTIC_NODES = 2_000


@dataclass(frozen=True)
class AnytimeResult:
    state: AllocationState
    termination: Termination
    stats: SearchStats
    polish: PolishResult | None
    iterations: int
    starts: int
    time_to_best_s: float  # since the start of `plan_anytime`


def plan_anytime(
    table: CandidateTable,
    time_budget_s: float,
    seed: int = 0,
    mech: Mechanisms = Mechanisms(),
    current: Plan | None = None,
    max_starts: int | None = None,
    stop: StopSignal | None = None,
    polish_with: str | None = "auto",
    gap: float = 1e-4,
) -> AnytimeResult:
    """AGH, the exact polish and LNS within `time_budget_s` (see the module
    docstring). `polish_with`: "auto" (HiGHS if installed, else CBC), "highs",
    "cbc", or None (no polish; also for ablations, whose mechanisms must not be
    hidden by an exact solver). (A little over 80 lines: the three phases read
    best in sequence.)"""
    t0 = time.monotonic()
    deadline = t0 + time_budget_s
    deterministic = max_starts is not None
    use_polish = (
        polish_with is not None and mech == Mechanisms() and time_budget_s >= MIN_POLISH_BUDGET_S
    )
    runner: StageRunner | None = (
        open_runner(polish_backend(None if polish_with == "auto" else polish_with), deterministic)
        if use_polish
        else None
    )
    try:
        agh_s = (
            time_budget_s
            if deterministic or runner is None
            else min(AGH_SHARE * time_budget_s, AGH_MAX_S)
        )
        st, stats = agh(
            table,
            time_budget_s=agh_s,
            seed=seed,
            mech=mech,
            current=current,
            max_starts=max_starts,
            stop=stop,
            infeasible_cutoff_s=(
                None if runner is None or deterministic else INFEASIBLE_CUTOFF * agh_s
            ),
        )
        best, time_to_best = st, stats.time_to_best_s
        iterations = stats.iterations
        pol: PolishResult | None = None
        if runner is not None and not deterministic:
            # The solver process may still be starting (a busy machine): search on.
            best, n = _search_while_starting(
                table, best, runner, deadline - END_MARGIN_S, seed + iterations, mech, stop
            )
            if n:
                iterations += n
                time_to_best = time.monotonic() - t0 if best is not st else time_to_best
        if runner is not None and not _stopped(stop):
            pol = polish(
                table,
                best,
                runner,
                deadline - END_MARGIN_S,
                pool=list(stats.elite[1:]),
                stop=stop,
                current=current,
                gap=gap,
                max_nodes=DETERMINISTIC_NODES if deterministic else None,
            )
            if pol.improved:
                best, time_to_best = pol.state, time.monotonic() - t0
    finally:
        if runner is not None:
            runner.close()
    proven = pol is not None and pol.proven_optimal
    if not proven and not deterministic and not _stopped(stop):
        left = deadline - END_MARGIN_S - time.monotonic()
        if left > 0.02:
            improved, lns_iterations = lns(table, best, left, seed, mech, stop)
            iterations += lns_iterations
            if improved is not best:
                best, time_to_best = improved, time.monotonic() - t0
    termination = _termination(stop, proven, deterministic, stats, pol)
    return AnytimeResult(best, termination, stats, pol, iterations, stats.starts, time_to_best)


def _termination(
    stop: StopSignal | None,
    proven: bool,
    deterministic: bool,
    stats: SearchStats,
    pol: PolishResult | None,
) -> Termination:
    """See the module docstring."""
    if _stopped(stop):
        return "stopped"
    if proven:
        return "converged"
    finished = stats.termination in ("completed", "converged")
    if deterministic and finished and (pol is None or not pol.stopped):
        return "completed"
    return "deadline"


def _search_while_starting(
    table: CandidateTable,
    best: AllocationState,
    runner: StageRunner,
    until: float,
    seed: int,
    mech: Mechanisms,
    stop: StopSignal | None,
) -> tuple[AllocationState, int]:
    """LNS in slices of `READY_POLL_S` until the polish's solver is ready (or
    `until`, or `stop`); the best state and the iterations spent."""
    iterations = 0
    while not runner.ready_now() and not _stopped(stop) and time.monotonic() < until - READY_POLL_S:
        best, n = lns(table, best, READY_POLL_S, seed + iterations, mech, stop)
        iterations += n
    return best, iterations


def _stopped(stop: StopSignal | None) -> bool:
    return stop is not None and stop.is_set()
