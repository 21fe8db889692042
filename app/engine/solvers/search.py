"""The pieces of AGH's search that GH's repair, LNS and the schedule share: the
stop signal, the monotonic deadline, the rank of two states, and the local
search (`LocalSearch`), whose moves are accepted only when they improve the
rank (feasibility shortfall, then cost including the change cost vs the live
plan):

- reinsert: take a query type out everywhere and insert it again greedily
  against everyone else's capacity (relocates fractions between deployments);
- swap: move a deployment's whole traffic to another candidate (other GPU,
  precision, TP/PP or model; possibly an active one, which merges the two),
  evaluated for all candidates at once with arrays;
- consolidate: close a deployment and re-insert its traffic elsewhere, or drop
  one replica and spill its traffic into spare capacity;
- open and fill: open one replica of an unused candidate and pull traffic into it.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import numpy as np

from app.engine.plan.candidates import CandidateTable
from app.engine.solvers.greedy import Greedy, Mechanisms
from app.engine.solvers.state import AllocationState


class StopSignal(Protocol):
    """Anything with `is_set()` (a threading.Event, or the service's "a newer
    generation is waiting" flag): set means stop now and return the best so far."""

    def is_set(self) -> bool: ...


class Deadline:
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
    def __init__(self, table: CandidateTable, mech: Mechanisms, deadline: Deadline) -> None:
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
                fits = room / t.load[i, d] if t.load[i, d] > 0 else math.inf  # no demand: all
                f = min(float(new.x[i, a]), fits)
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
