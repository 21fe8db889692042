"""The mutable allocation state that GH, AGH's local search and the exact polish
share: replicas `r` (D,), routing fractions `x` (I, D) and unmet fractions `u` (I,)
over a candidate table, with the aggregates every move needs kept up to date (load
per deployment, GPUs per type, rental + storage spend, accuracy slack per type).

Invariant on output: for every query type, routed + unmet = 1. Whatever share of
a type no deployment carries is unmet and priced as such (`objective` counts it,
`to_plan` reports it), so a state can never look cheap by dropping demand.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from app.engine.plan import costs
from app.engine.plan.candidates import CandidateTable
from app.engine.plan.plan import Plan, Route

EPS = 1e-9

# Indices arrive both as Python ints and as numpy integers (from np.flatnonzero).
Index = int | np.integer[Any]
# Routing fractions below this are dropped when a plan is emitted.
MIN_FRACTION = 1e-7


class AllocationState:
    """Replicas, routing and unmet fractions over a candidate table, with
    incrementally maintained aggregates."""

    def __init__(self, table: CandidateTable, current: Plan | None = None) -> None:
        self.t = table
        I, D = table.pairs.mu.shape
        self.I, self.D = I, D
        self.r = np.zeros(D, dtype=np.int64)
        self.x = np.zeros((I, D))
        self.u = np.zeros(I)
        self.used = np.zeros(D)  # replica-units of load per deployment
        self.gpu_used = np.zeros(len(table.scenario.gpus), dtype=np.int64)
        self.spend = 0.0  # rental + storage of the current r
        self.acc_slack = np.zeros(I)  # Σ_d (ε_i − e_id)·x_id; >= 0 when accuracy holds
        self.delay_spend = 0.0
        self.max_util = table.scenario.policy.max_utilization
        self.budget = table.scenario.policy.budget
        self.storage_cap = table.scenario.policy.storage_capacity_gb
        self.storage_used = 0.0
        err = np.where(np.isfinite(table.pairs.error), table.pairs.error, 1.0)
        self.err = err
        self.acc_gain = table.max_error[:, None] - err  # slack gained per unit routed
        # Current (live) plan, for the change-cost term.
        self.r_cur = np.zeros(D, dtype=np.int64)
        self.change_base = 0.0  # cost of removing live deployments absent from the table
        # Change cost applies only when re-planning from a live plan.
        self.cc = costs.change_cost_per_gpu(table.scenario.policy) if current is not None else 0.0
        if current is not None:
            for dep in current.deployments:
                k = table.index.get(dep.id)
                if k is None:
                    self.change_base += self.cc * dep.gpus
                else:
                    self.r_cur[k] = dep.replicas

    # ---- copies ---------------------------------------------------------
    def copy(self) -> AllocationState:
        new = object.__new__(AllocationState)
        new.__dict__.update(self.__dict__)
        for name in ("r", "x", "u", "used", "gpu_used", "acc_slack"):
            setattr(new, name, getattr(self, name).copy())
        return new

    # ---- mutation -------------------------------------------------------
    def set_replicas(self, d: Index, r: Index) -> None:
        t = self.t
        old = int(self.r[d])
        if r == old:
            return
        self.gpu_used[t.gpu[d]] += (r - old) * int(t.gpus_per_replica[d])
        self.spend += (r - old) * t.replica_cost[d]
        if (old == 0) != (r == 0):
            sign = 1.0 if r > 0 else -1.0
            self.spend += sign * t.storage_cost[d]
            self.storage_used += sign * t.weight_gb[d]
        self.r[d] = r

    def route(self, i: Index, d: Index, frac: float) -> None:
        """Add `frac` (may be negative) of type i's demand to deployment d."""
        self.x[i, d] += frac
        if abs(self.x[i, d]) < 1e-15:
            self.x[i, d] = 0.0
        self.used[d] += frac * self.t.load[i, d]
        self.acc_slack[i] += frac * self.acc_gain[i, d]
        self.delay_spend += frac * self.t.delay_cost[i, d]

    def fit_replicas(self, d: Index) -> None:
        """Shrink (or grow) d's replicas to the fewest that carry its load."""
        need = self.replicas_for(self.used[d])
        self.set_replicas(d, need)

    def replicas_for(self, load: float) -> int:
        if load <= EPS:
            return 0
        return max(1, math.ceil(load / self.max_util - 1e-9))

    # ---- accounting -----------------------------------------------------
    def change_cost(self) -> float:
        """`costs.change_cost_of` on the state's replicas (plus live deployments the
        table cannot hold, stopped for sure)."""
        if self.cc <= 0:
            return 0.0
        return self.change_base + costs.change_cost_of(
            self.cc, self.t.gpus_per_replica, self.r, self.r_cur
        )

    def change_delta(self, d: Any, new_r: Any) -> Any:
        """Change cost of setting candidate(s) `d` to `new_r` replicas, minus what
        their present replicas cost (elementwise over arrays, or scalars)."""
        if self.cc <= 0:
            return np.zeros(np.shape(new_r)) if np.ndim(new_r) else 0.0
        gpr, cur = self.t.gpus_per_replica[d], self.r_cur[d]
        return self.cc * gpr * (np.abs(new_r - cur) - np.abs(self.r[d] - cur))

    def uncovered(self) -> np.ndarray:
        """(I,) share of each type that is neither routed nor marked unmet. Moves
        leave some transiently; for pricing and output it counts as unmet."""
        out: np.ndarray = np.maximum(0.0, 1.0 - self.x.sum(axis=1) - self.u)
        return out

    def unmet_spend(self) -> float:
        """Penalty of unserved demand: marked unmet plus anything left uncovered
        (a state never looks cheaper by silently dropping a type)."""
        return float((self.t.unmet_cost * (self.u + self.uncovered())).sum())

    def objective(self) -> float:
        return self.spend + self.unmet_spend() + self.delay_spend + self.change_cost()

    def remaining(self, i: Index) -> float:
        return max(0.0, 1.0 - float(self.x[i].sum()) - float(self.u[i]))

    def shortfall(self) -> float:
        """How far the state is from feasible, summed over the constraint kinds the
        heuristics can break (0 when every one holds). Used to rank starts."""
        t = self.t
        over_unmet = np.maximum(0.0, self.u - t.max_unmet).sum()
        uncovered = sum(self.remaining(i) for i in range(self.I))
        over_gpu = np.maximum(0, self.gpu_used - t.gpu_available).sum()
        # Money and storage overruns count relative to their bound, like fractions.
        over_budget = (
            max(0.0, self.spend - self.budget) / max(self.budget, 1e-9)
            if self.budget is not None
            else 0.0
        )
        acc = np.maximum(0.0, -self.acc_slack).sum()
        cap = np.maximum(0.0, self.used - self.max_util * self.r).sum()
        over_storage = (
            max(0.0, self.storage_used - self.storage_cap) / max(self.storage_cap, 1e-9)
            if self.storage_cap is not None
            else 0.0
        )
        return float(over_unmet + uncovered + over_gpu + over_budget + acc + cap + over_storage)

    def score(self) -> tuple[float, float]:
        """Lexicographic rank: feasibility shortfall first, then cost."""
        sf = self.shortfall()
        return (round(sf, 9), self.objective())

    # ---- output ----------------------------------------------------------
    def to_plan(self) -> Plan:
        t, s = self.t, self.t.scenario
        deps = [t.deployment(int(d), int(self.r[d])) for d in np.flatnonzero(self.r > 0)]
        routes = []
        ii, dd = np.nonzero(self.x > MIN_FRACTION)
        for i, d in zip(ii, dd, strict=True):
            routes.append(Route(s.query_types[i].id, t.ids[d], float(self.x[i, d])))
        # routed + unmet = 1 for every type: what no emitted route carries (tiny
        # fractions dropped above, anything a move left uncovered) is unmet.
        kept = np.where(self.x > MIN_FRACTION, self.x, 0.0).sum(axis=1)
        short = np.maximum(0.0, 1.0 - kept - self.u)
        unmet = {
            s.query_types[i].id: float(self.u[i] + short[i])
            for i in range(self.I)
            if self.u[i] + short[i] > 1e-12
        }
        return Plan.build(deps, routes, unmet)


def state_from_plan(
    table: CandidateTable, plan: Plan, current: Plan | None = None
) -> AllocationState:
    """Load a plan's decisions into a state (deployments not in the table are
    dropped and their traffic left uncovered, to be repaired). Unmet fractions are
    loaded as they are, caps or not: a type that nothing can serve stays unmet
    and priced (`agh.repair` decides again what a warm start leaves unmet)."""
    st = AllocationState(table, current)
    qidx = table.scenario.qt_index()
    for dep in plan.deployments:
        k = table.index.get(dep.id)
        if k is not None:
            st.set_replicas(k, dep.replicas)
    for r in plan.routing:
        k = table.index.get(r.deployment)
        i = qidx.get(r.query_type)
        if k is None or i is None or st.r[k] == 0 or not table.feasible[i, k]:
            continue
        st.route(i, k, r.fraction)
    for q, f in plan.unmet.items():
        i = qidx.get(q)
        if i is not None:
            st.u[i] = min(f, max(0.0, 1.0 - float(st.x[i].sum())))
    return st
