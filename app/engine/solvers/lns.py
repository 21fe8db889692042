"""AGH's large-neighbourhood search: from a good plan, until the deadline,
destroy part of it and repair it greedily, then run the local search; keep the
result when it ranks better.

Destroy moves (one drawn per iteration):
* *types*: take a random set of query types out of the plan (their routing
  removed, replicas shrunk to what is left) and insert them again in a random
  order with the randomized greedy;
* *deployments*: close a random set of active deployments and re-insert their
  traffic elsewhere (other candidates, or the same ones re-opened later);
* *related*: the types that share a deployment with a random type (they compete
  for the same capacity, so moving them together can swap who gets it).

The destroyed share grows while iterations bring nothing and falls back after
an improvement. The same seed and the same number of iterations give the same
plan (`max_iterations`); a deadline ends the search wherever it is.
"""

from __future__ import annotations

import numpy as np

from app.engine.plan.candidates import CandidateTable
from app.engine.solvers.greedy import Greedy, Mechanisms
from app.engine.solvers.search import Deadline, LocalSearch, StopSignal, better
from app.engine.solvers.state import AllocationState

# Share of the query types (or deployments) destroyed, min and max.
SHARE_MIN, SHARE_MAX = 0.1, 0.5


def lns(
    table: CandidateTable,
    start: AllocationState,
    time_budget_s: float,
    seed: int = 0,
    mech: Mechanisms = Mechanisms(),
    stop: StopSignal | None = None,
    max_iterations: int | None = None,
) -> tuple[AllocationState, int]:
    """Improve `start` until the deadline, `stop` or `max_iterations`; returns the
    best state (`start` itself when nothing beat it) and the iterations done."""
    deadline = Deadline(time_budget_s, stop)
    rng = np.random.default_rng([seed, 0x4C4E53])
    ls = LocalSearch(table, mech, deadline)
    best, best_sc = start, start.score()
    share = SHARE_MIN
    it = 0
    while not deadline.passed() and (max_iterations is None or it < max_iterations):
        it += 1
        kind = int(rng.integers(3))
        cand = _destroy_repair(table, best, kind, share, rng, mech)
        if cand is None:
            continue
        cand = ls.improve(cand)
        sc = cand.score()
        if better(sc, best_sc):
            best, best_sc = cand, sc
            share = SHARE_MIN
        else:
            share = min(SHARE_MAX, share * 1.1)
    return best, it + ls.iterations


def _destroy_repair(
    table: CandidateTable,
    st: AllocationState,
    kind: int,
    share: float,
    rng: np.random.Generator,
    mech: Mechanisms,
) -> AllocationState | None:
    new = st.copy()
    I = new.I
    if kind == 1:
        active = np.flatnonzero(new.r > 0)
        if active.size == 0:
            return None
        n = max(1, round(share * active.size))
        closed = rng.choice(active, size=min(n, active.size), replace=False)
        types = np.flatnonzero(new.x[:, closed].sum(axis=1) > 0)
        for d in closed:
            for i in np.flatnonzero(new.x[:, d] > 0):
                new.route(int(i), int(d), -float(new.x[i, d]))
            new.fit_replicas(int(d))
    else:
        if kind == 2:
            i0 = int(rng.integers(I))
            deps = np.flatnonzero(new.x[i0] > 0)
            types = np.flatnonzero(new.x[:, deps].sum(axis=1) > 0) if deps.size else np.array([i0])
            n = max(1, round(share * I))
            if types.size > n:
                types = rng.choice(types, size=n, replace=False)
        else:
            n = max(1, round(share * I))
            types = rng.choice(I, size=min(n, I), replace=False)
        for i in types:
            for d in np.flatnonzero(new.x[i] > 0):
                new.route(int(i), int(d), -float(new.x[i, d]))
                new.fit_replicas(int(d))
    for i in types:
        new.u[i] = 0.0
    g = Greedy(table, mech, rng=rng, alpha=float(rng.choice((0.0, 0.3, 1.0))))
    order = rng.permutation(types)
    caps = table.max_unmet
    for i in order:  # mandatory shares first, as GH does
        if caps[i] > 0:
            g.insert(new, int(i), leave=float(caps[i]))
    for i in order:
        g.insert(new, int(i))
        rem = new.remaining(int(i))
        if rem > 1e-9:
            new.u[i] += rem
    for d in np.flatnonzero(new.r > 0):
        new.fit_replicas(int(d))
    return new
