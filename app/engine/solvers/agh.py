"""AGH: GH plus multi-start, local search and consolidation, anytime (SPEC §3).

* Multi-start over type orderings: arrival rate, accuracy bound, footprint and
  scarcity (ascending and descending where it matters), then seeded random
  permutations with a randomized GH (GRASP: which new deployment to open is drawn
  among the options within (1 + alpha) of the best $ per coverage); a warm start
  from the live plan (repaired to the new demand) is tried first when given.
* Local search on each start, moves accepted only when they improve the rank
  (feasibility shortfall, then cost including the change cost vs the live plan):
  - reinsert: take a query type out everywhere and insert it again greedily
    against everyone else's capacity (relocates fractions between deployments);
  - swap: move a deployment's whole traffic to another candidate (other GPU,
    precision, TP/PP or model; possibly an active one, which merges the two),
    evaluated for all candidates at once with arrays;
  - consolidate: close a deployment and re-insert its traffic elsewhere, or drop
    one replica and spill its traffic into spare capacity.
* Anytime: a monotonic deadline is checked inside every loop; the best state seen
  is always a complete plan; it stops at the deadline or when `patience`
  consecutive randomized starts bring no improvement.
* Deterministic: the same seed and input give the same plan whenever the search
  ends by convergence rather than by the deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.engine.plan.candidates import CandidateTable
from app.engine.plan.plan import Plan
from app.engine.solvers.greedy import Greedy, Mechanisms, greedy, type_order
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


class StopSignal(Protocol):
    """Anything with `is_set()` (a threading.Event, or the service's "a newer
    generation is waiting" flag): set means stop now and return the best so far."""

    def is_set(self) -> bool: ...


class _Deadline:
    def __init__(self, budget_s: float, stop: StopSignal | None = None) -> None:
        self.t0 = time.monotonic()
        self.end = self.t0 + budget_s
        self.stop = stop

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def passed(self) -> bool:
        return time.monotonic() >= self.end or self.stopped()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def better(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Rank a strictly better than b (shortfall first, then cost)."""
    if a[0] < b[0] - 1e-9:
        return True
    if a[0] > b[0] + 1e-9:
        return False
    return a[1] < b[1] - 1e-9 * max(1.0, abs(b[1]))


class LocalSearch:
    def __init__(self, table: CandidateTable, mech: Mechanisms, deadline: _Deadline) -> None:
        self.t = table
        self.mech = mech
        self.deadline = deadline
        self.greedy = Greedy(table, mech)
        self.iterations = 0

    # ---- moves ------------------------------------------------------------
    def reinsert_type(self, st: AllocationState, i: int) -> AllocationState:
        new = st.copy()
        for d in np.flatnonzero(new.x[i] > 0):
            new.route(i, d, -float(new.x[i, d]))
            new.fit_replicas(d)
        new.u[i] = 0.0
        self.greedy.insert(new, i)
        rem = new.remaining(i)
        if rem > 1e-9:
            new.u[i] += rem
        return new

    def close_deployment(self, st: AllocationState, d: int) -> AllocationState:
        new = st.copy()
        on = np.flatnonzero(new.x[:, d] > 0)
        for i in on:
            new.route(i, d, -float(new.x[i, d]))
        new.set_replicas(d, 0)
        banned = np.zeros(new.D, dtype=bool)
        banned[d] = True
        g = Greedy(self.t, self.mech, banned=banned)
        for i in on:
            g.insert(new, int(i))
            rem = new.remaining(int(i))
            if rem > 1e-9:
                new.u[i] += rem
        return new

    def drop_replica(self, st: AllocationState, d: int) -> AllocationState | None:
        if st.r[d] <= 1:
            return None
        new = st.copy()
        new.set_replicas(d, int(st.r[d]) - 1)
        excess = new.used[d] - new.max_util * new.r[d]
        if excess <= 1e-12:
            return new
        on = np.flatnonzero(new.x[:, d] > 0)
        share = excess / new.used[d]
        for i in on:
            new.route(int(i), d, -float(new.x[i, d]) * share)
        banned = np.zeros(new.D, dtype=bool)
        banned[d] = True
        g = Greedy(self.t, self.mech, banned=banned)
        for i in on:
            g.insert(new, int(i), allow_new=False)
            rem = new.remaining(int(i))
            if rem > 1e-9:
                return None
        return new

    def best_swap(self, st: AllocationState, d: int) -> AllocationState | None:
        """Move all of d's traffic to the candidate that lowers cost the most."""
        t = self.t
        on = np.flatnonzero(st.x[:, d] > 0)
        if on.size == 0:
            return None
        xs = st.x[on, d]
        feas = np.asarray(t.feasible[on].all(axis=0), dtype=bool)
        feas[d] = False
        if not feas.any():
            return None
        load = np.where(
            feas, (xs[:, None] * np.where(t.feasible[on], t.load[on], 0.0)).sum(0), np.inf
        )
        tot = st.used + load
        new_r = np.where(feas, np.ceil(tot / st.max_util - 1e-9), 0).astype(np.int64)
        new_r = np.maximum(new_r, np.where(feas, 1, 0))
        add = new_r - st.r
        gpr = t.gpus_per_replica
        same_gpu = t.gpu == t.gpu[d]
        freed = st.r[d] * gpr[d]
        gpu_after = st.gpu_used[t.gpu] + add * gpr - np.where(same_gpu, freed, 0)
        ok = feas.copy()
        if self.mech.m1:
            ok &= gpu_after <= t.gpu_available[t.gpu]
            gain = st.acc_gain[on]  # (n_on, D)
            slack_after = st.acc_slack[on, None] + xs[:, None] * (gain - gain[:, [d]])
            ok &= ((slack_after >= -1e-12) | (slack_after >= st.acc_slack[on, None] - 1e-12)).all(
                axis=0
            )
        delta = (
            add * t.replica_cost
            - st.r[d] * t.replica_cost[d]
            + np.where(st.r == 0, t.storage_cost, 0.0)
            - t.storage_cost[d]
            + (xs[:, None] * (t.delay_cost[on] - t.delay_cost[on, d][:, None])).sum(0)
        )
        delta = delta + st.change_delta(slice(None), new_r) + st.change_delta(d, 0)
        if self.mech.m1 and st.budget is not None:
            ok &= st.spend + delta <= st.budget + 1e-9
        if st.storage_cap is not None and self.mech.m1:
            ok &= (st.r > 0) | (st.storage_used - t.weight_gb[d] + t.weight_gb <= st.storage_cap)
        delta = np.where(ok, delta, np.inf)
        k = int(np.argmin(delta))
        if not np.isfinite(delta[k]) or delta[k] >= -1e-9:
            return None
        new = st.copy()
        for i, f in zip(on, xs, strict=True):
            new.route(int(i), d, -float(f))
            new.route(int(i), k, float(f))
        new.set_replicas(d, 0)
        new.fit_replicas(k)
        return new

    def open_and_fill(self, st: AllocationState, k: int = 6) -> AllocationState | None:
        """Open one replica of a candidate not in use and pull traffic into it from
        the deployments where it costs the most capacity, then shrink everyone to
        the replicas their load needs. Tried for the `k` candidates with the largest
        estimated saving; the best improvement is returned. This is the inverse of
        closing a deployment: it lets the search reach plans where one bigger or
        more accurate replica replaces slack spread over several others."""
        t = self.t
        served = st.x.sum(axis=1)  # (I,)
        if served.sum() <= 0:
            return None
        frac_cost = t.replica_cost[None, :] * t.load / st.max_util  # $ per unit of type
        with np.errstate(invalid="ignore"):
            cur = np.where(st.x > 0, frac_cost, 0.0)
            cur = (cur * st.x).sum(axis=1) / np.maximum(served, 1e-12)  # (I,)
        gain = np.where(t.feasible, cur[:, None] - frac_cost, 0.0)
        saving = (np.maximum(gain, 0.0) * st.x.sum(axis=1)[:, None]).sum(axis=0)
        saving[st.r > 0] = 0.0
        if self.mech.m1:
            free = t.gpu_available[t.gpu] - st.gpu_used[t.gpu]
            saving[free < t.gpus_per_replica] = 0.0
        order = np.argsort(-saving)[:k]
        best: AllocationState | None = None
        best_score = st.score()
        for d in order:
            if saving[d] <= 0 or self.deadline.passed():
                break
            cand = self._fill(st, int(d))
            if cand is not None:
                sc = cand.score()
                if better(sc, best_score):
                    best, best_score = cand, sc
        return best

    def _fill(self, st: AllocationState, d: int) -> AllocationState | None:
        t = self.t
        new = st.copy()
        new.set_replicas(d, 1)
        room = new.max_util - new.used[d]
        types = np.flatnonzero(t.feasible[:, d] & (new.x.sum(axis=1) > 0))
        # Most capacity freed per unit of room first.
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.array(
                [
                    (new.x[i] * t.replica_cost * t.load[i]).sum()
                    / max(new.x[i].sum(), 1e-12)
                    / t.load[i, d]
                    for i in types
                ]
            )
        touched = set()
        for i in types[np.argsort(-value)]:
            srcs = np.flatnonzero(new.x[i] > 0)
            srcs = srcs[np.argsort(-(t.replica_cost[srcs] * t.load[i, srcs]))]
            for a in srcs:
                if room <= 1e-12:
                    break
                if a == d:
                    continue
                f = min(float(new.x[i, a]), room / t.load[i, d])
                delta_gain = new.acc_gain[i, d] - new.acc_gain[i, a]
                if self.mech.m1 and delta_gain < 0:
                    f = min(f, max(0.0, float(new.acc_slack[i])) / -delta_gain)
                if f <= 1e-12:
                    continue
                new.route(int(i), int(a), -f)
                new.route(int(i), d, f)
                room -= f * t.load[i, d]
                touched.add(int(a))
        if not touched:
            return None
        for src in touched:
            new.fit_replicas(src)
        new.fit_replicas(d)
        if self.mech.m1 and new.gpu_used[t.gpu[d]] > t.gpu_available[t.gpu[d]]:
            return None
        return new

    # ---- driver -------------------------------------------------------------
    def improve(self, st: AllocationState) -> AllocationState:
        best, best_score = st, st.score()
        improved = True
        while improved and not self.deadline.passed():
            improved = False
            # Swaps and consolidation over active deployments, cheapest wins first.
            for d in np.argsort(-best.r * self.t.replica_cost):
                if self.deadline.passed():
                    return best
                if best.r[d] == 0:
                    continue
                for move in (self.best_swap, self.close_deployment, self.drop_replica):
                    self.iterations += 1
                    cand = move(best, int(d))
                    if cand is not None:
                        sc = cand.score()
                        if better(sc, best_score):
                            best, best_score, improved = cand, sc, True
                            break
                    if self.deadline.passed():
                        return best
            for i in range(best.I):
                if self.deadline.passed():
                    return best
                self.iterations += 1
                cand = self.reinsert_type(best, i)
                sc = cand.score()
                if better(sc, best_score):
                    best, best_score, improved = cand, sc, True
            if not improved and not self.deadline.passed():
                self.iterations += 1
                opened = self.open_and_fill(best)
                if opened is not None:
                    best, best_score, improved = opened, opened.score(), True
        return best


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
) -> tuple[AllocationState, SearchStats]:
    """Run AGH until the deadline, convergence or `stop`; return the best state."""
    deadline = _Deadline(time_budget_s, stop)
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
        st = greedy(
            table,
            order,
            mech,
            current,
            rng=rng if randomized else None,
            alpha=GRASP_ALPHAS[k % len(GRASP_ALPHAS)] if randomized else 0.0,
            give_up=deadline.passed,
        )
        starts += 1
        if best is None or not deadline.passed():
            st = ls.improve(st)
        consider(st, False)
        if current is not None and k <= 2 and not deadline.passed():
            # Also a start that ignores the live plan while building (priced with the
            # change cost all the same): replacing several live deployments at once
            # is out of reach of one-deployment moves.
            cold = state_from_plan(table, greedy(table, order, mech, None).to_plan(), current)
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
