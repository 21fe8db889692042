"""AGH: GH plus multi-start, local search and consolidation, anytime (SPEC §3).

* Multi-start over type orderings: arrival rate, accuracy bound, footprint and
  scarcity (ascending and descending where it matters), then seeded random
  permutations with a randomized GH (GRASP: which new deployment to open is drawn
  among the options within (1 + alpha) of the best $ per coverage); a warm start
  from the live plan (repaired to the new demand) is tried first when given.
* Local search on each start, moves accepted only when they improve the rank
  (feasibility shortfall, then cost including the change cost vs the live plan):
  reinsert, swap, consolidate, open-and-fill (`app.engine.solvers.search`).
* Anytime: a monotonic deadline is checked inside every loop; the best state seen
  is always a complete plan; it stops at the deadline, at `max_starts`, or when
  `patience` consecutive randomized starts bring no improvement (termination
  "converged": a local optimum every restart reaches again, not a proof).
* Deterministic: the same seed and input give the same plan whenever the search
  ends by convergence or its start limit rather than by the deadline.

This is the multi-start phase; `app.engine.solvers.anytime.plan_anytime` (what
`solve(..., "agh")` runs) spends the rest of the budget on the exact polish and
LNS, and keeps the best distinct plans found here (`SearchStats.elite`) to build
the polish's neighbourhoods from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from app.engine.plan.candidates import CandidateTable
from app.engine.plan.plan import Plan
from app.engine.solvers.greedy import Greedy, Mechanisms, greedy
from app.engine.solvers.orders import type_order
from app.engine.solvers.search import Deadline
from app.engine.solvers.search import LocalSearch as LocalSearch
from app.engine.solvers.search import StopSignal as StopSignal
from app.engine.solvers.search import better as better
from app.engine.solvers.state import AllocationState, state_from_plan

# Random starts also randomize which new deployment GH opens (GRASP): any option
# within (1 + alpha) of the best $ per coverage may be taken; alpha cycles through
# these values so that both near-greedy and bolder starts are tried.
GRASP_ALPHAS = (0.5, 1.0, 2.0)

DETERMINISTIC_ORDERS = (
    "lambda_desc",
    "eps_asc",
    "footprint_desc",
    "scarcity",
    "lambda_asc",
    "eps_desc",
    "footprint_asc",
)


@dataclass(frozen=True, slots=True)
class SearchStats:
    iterations: int  # local-search moves tried
    starts: int  # starts completed (warm start included)
    warm_start_used: bool  # the returned plan descends from the warm start
    termination: str  # "converged" | "deadline" | "stopped" | "completed"
    time_to_best_s: float  # when the returned plan was found
    elite: tuple[AllocationState, ...] = ()  # the best distinct local optima, best first


def repair(table: CandidateTable, st: AllocationState, mech: Mechanisms) -> AllocationState:
    """Make a loaded plan consistent with the current scenario: grow replicas that
    are overloaded (or shed the excess), drop routing that breaks accuracy, and
    insert whatever demand is uncovered."""
    g = Greedy(table, mech)
    # What the live plan left unmet is decided again: serve it now if possible.
    np.minimum(st.u, table.max_unmet, out=st.u)
    for d in np.flatnonzero(st.used > 0):
        need = st.replicas_for(st.used[d])
        if need > st.r[d]:
            extra = (need - st.r[d]) * table.gpus_per_replica[d]
            gpus_ok = st.gpu_used[table.gpu[d]] + extra <= table.gpu_available[table.gpu[d]]
            money_ok = st.budget is None or (
                st.spend + (need - st.r[d]) * table.replica_cost[d] <= st.budget + 1e-9
            )
            if gpus_ok and money_ok:
                st.set_replicas(d, need)
            else:
                cap = st.max_util * st.r[d]
                share = 1.0 - cap / st.used[d]
                for i in np.flatnonzero(st.x[:, d] > 0):
                    st.route(int(i), d, -float(st.x[i, d]) * share)
    # availability may have shrunk under an existing plan: shed whole replicas
    for gi in np.flatnonzero(st.gpu_used > table.gpu_available):
        for d in np.flatnonzero((table.gpu == gi) & (st.r > 0)):
            while st.gpu_used[gi] > table.gpu_available[gi] and st.r[d] > 0:
                st.set_replicas(d, int(st.r[d]) - 1)
            cap = st.max_util * st.r[d]
            if st.used[d] > cap:
                share = 1.0 - cap / st.used[d] if st.used[d] > 0 else 1.0
                for i in np.flatnonzero(st.x[:, d] > 0):
                    st.route(int(i), d, -float(st.x[i, d]) * share)
    # the budget may have shrunk (or prices risen) under the live plan: shed replicas
    if st.budget is not None:
        for d in np.argsort(-table.replica_cost):
            while st.spend > st.budget + 1e-9 and st.r[d] > 0:
                st.set_replicas(d, int(st.r[d]) - 1)
                cap = st.max_util * st.r[d]
                if st.used[d] > cap:
                    share = 1.0 - cap / st.used[d]
                    for i in np.flatnonzero(st.x[:, d] > 0):
                        st.route(int(i), d, -float(st.x[i, d]) * share)
            if st.spend <= st.budget + 1e-9:
                break
    for q in range(st.I):
        if st.acc_slack[q] < -1e-12:
            for d in np.flatnonzero(st.x[q] > 0):
                st.route(q, d, -float(st.x[q, d]))
    for t_i in type_order(table, "lambda_desc"):
        if table.feasible[t_i].any():
            g.insert(st, t_i)
        rem = st.remaining(t_i)
        if rem > 1e-9:
            st.u[t_i] += rem
    for d in np.flatnonzero(st.r > 0):
        st.fit_replicas(d)
    return st


def agh(
    table: CandidateTable,
    time_budget_s: float = 1.0,
    seed: int = 0,
    mech: Mechanisms = Mechanisms(),
    current: Plan | None = None,
    warm_start: Plan | None = None,
    patience: int = 12,
    max_starts: int | None = None,
    stop: StopSignal | None = None,
    infeasible_cutoff_s: float | None = None,
) -> tuple[AllocationState, SearchStats]:
    """Run AGH until the deadline, convergence or `stop`; return the best state.
    `infeasible_cutoff_s`: also return once this much time has passed with every
    plan so far breaking a constraint (the exact polish is then the better use
    of the time: it finds feasible plans where the greedy starts do not).
    Over 80 lines: the start loop and its stopping rules read as one sequence."""
    deadline = Deadline(time_budget_s, stop)
    rng = np.random.default_rng(seed)
    ls = LocalSearch(table, mech, deadline)
    best: AllocationState | None = None
    best_score = (np.inf, np.inf)
    best_from_warm = False
    time_to_best = 0.0
    starts = 0
    stale = 0

    elite: list[tuple[tuple[float, float], AllocationState]] = []

    def consider(st: AllocationState, from_warm: bool) -> None:
        nonlocal best, best_score, best_from_warm, time_to_best, stale
        sc = st.score()
        _keep_elite(elite, sc, st)
        if best is None or better(sc, best_score):
            best, best_score, best_from_warm = st, sc, from_warm
            time_to_best = deadline.elapsed()
            stale = 0
        else:
            stale += 1

    if table.size == 0:  # nothing can serve anything: GH's all-unmet plan is the answer
        st = greedy(table, None, mech, current)
        return st, SearchStats(0, 1, False, "converged", deadline.elapsed())

    warm = warm_start if warm_start is not None else current
    if warm is not None:
        st = repair(table, state_from_plan(table, warm, current), mech)
        starts += 1
        consider(ls.improve(st), True)

    k = 0
    while True:
        if best is not None and deadline.passed():
            break
        if (
            infeasible_cutoff_s is not None
            and best_score[0] > 0
            and deadline.elapsed() >= infeasible_cutoff_s
        ):
            break
        if max_starts is not None and starts >= max_starts:
            break
        if k < len(DETERMINISTIC_ORDERS):
            order = type_order(table, DETERMINISTIC_ORDERS[k])
            if k == len(DETERMINISTIC_ORDERS) - 1:
                stale = -1  # patience counts the randomized starts only
        else:
            if stale >= patience:
                break
            order = type_order(table, "random", rng)
        randomized = k >= len(DETERMINISTIC_ORDERS)
        k += 1

        build = partial(  # this start's greedy, with the live plan or without
            greedy,
            table,
            order,
            mech,
            rng=rng if randomized else None,
            alpha=GRASP_ALPHAS[k % len(GRASP_ALPHAS)] if randomized else 0.0,
            give_up=deadline.passed,
        )

        st = build(current)
        starts += 1
        if best is None or not deadline.passed():
            st = ls.improve(st)
        consider(st, False)
        if current is not None and not deadline.passed():
            # Also a start that ignores the live plan while building (priced with the
            # change cost all the same): replacing several live deployments at once
            # is out of reach of one-deployment moves. Every start has its cold twin,
            # so a warm search explores what a cold one does (with a small change
            # cost, a cold plan is often the better one).
            built = build(None)
            if not deadline.passed():
                built = ls.improve(built)  # improved as a cold search would, then priced
            cold = state_from_plan(table, built.to_plan(), current)
            starts += 1
            consider(ls.improve(cold), False)

    assert best is not None
    termination = (
        "stopped"
        if deadline.stopped()
        else "deadline"
        if deadline.passed()
        else "completed"
        if max_starts is not None and starts >= max_starts
        else "converged"
    )
    return best, SearchStats(
        ls.iterations,
        starts,
        best_from_warm,
        termination,
        time_to_best,
        tuple(e[1] for e in elite),
    )


ELITE_SIZE = 4


def _keep_elite(
    elite: list[tuple[tuple[float, float], AllocationState]],
    sc: tuple[float, float],
    st: AllocationState,
) -> None:
    """Keep the ELITE_SIZE best local optima with distinct replica vectors."""
    for k, (esc, est) in enumerate(elite):
        if np.array_equal(est.r, st.r):
            if better(sc, esc):
                elite[k] = (sc, st)
                elite.sort(key=lambda e: e[0])
            return
    elite.append((sc, st))
    elite.sort(key=lambda e: e[0])
    del elite[ELITE_SIZE:]
