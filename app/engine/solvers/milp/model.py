"""The exact MILP of SPEC §1.3–1.5 as a Pyomo model over the candidate table, its
LP file, and the way back from a solver's column values to a `Plan`. Solving it
(`milp.audit`) and the solver processes (`milp.backends`) live apart.

Formulation, on the candidate table (variables only for feasible (i, d) pairs):

* r_d ∈ ℤ≥0, r_d ≤ R_d — replicas. R_d = max_replicas_d (what availability allows),
  tightened to the replicas that could ever carry load (ceil(Σ_i load_id /
  max_utilization)) but never below the live plan's count (keeping an idle replica
  can be cheaper than paying the change cost to stop it);
* x_id ∈ [0, min(1, max_util·R_d/load_id)] — routing; u_i ∈ [0, ζ_i] — unmet;
* z_d ∈ {0,1} — active; created only when something depends on it (storage price,
  storage capacity): r_d ≤ R_d·z_d and z_d ≤ r_d, so z_d = 1 exactly when r_d ≥ 1;
* a_d ≥ |r_d − r_d^cur| — only for live deployments when a change cost applies
  (for every other candidate |r_d − 0| = r_d).

Constraints (rows that can never bind are not written: the accuracy row of a type
whose every feasible pair already meets ε_i, an availability row whose GPUs'
R_d already fit):

1. coverage  Σ_d x_id + u_i = 1
2. capacity  Σ_i load_id·x_id ≤ max_utilization·r_d
3. availability  Σ_{d on g} gpus_per_replica_d·r_d ≤ available_g
4. accuracy  Σ_d e_id·x_id ≤ ε_i·(1 − u_i)
5. budget  Σ replica_cost·r + Σ storage_cost·z ≤ δ      (if set)
6. storage  Σ weight_gb·z ≤ capacity                   (if set)

Objective: exactly the evaluator's `cost.total` — rental + storage + unmet penalty +
delay penalty + change cost (live deployments absent from the table are stopped
for sure: a constant).

The solver's numbers are never trusted: the solution is turned into a `Plan`
(replicas rounded, routing fractions < 1e-9 dropped, coverage drift renormalised)
and priced and checked by `evaluate_plan`. A time-limited incumbent is reported as
termination `time_limit`, solution status `feasible` — never optimal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from app.engine.plan import costs
from app.engine.plan.candidates import CandidateTable
from app.engine.plan.plan import Plan, Route
from app.engine.solvers.milp.arrays import live_replicas

# Routing fractions below this are solver noise and dropped from the plan.
MIN_FRACTION = 1e-9
# Coverage drift up to this much is renormalised away; more is left for the
# evaluator to report (it would mean a solver bug, not rounding).
MAX_DRIFT = 1e-4


@dataclass
class MilpModel:
    """A built Pyomo model plus the index maps that tie it to the candidate table."""

    model: pyo.ConcreteModel
    table: CandidateTable
    pair_i: np.ndarray  # (P,) query-type index of pair k
    pair_d: np.ndarray  # (P,) candidate index of pair k
    r_ub: np.ndarray  # (D,) replica upper bounds
    r_cur: np.ndarray  # (D,) live plan's replicas (0 where none)
    change_const: float  # $ of stopping live deployments absent from the table
    relaxed: bool
    has_z: bool
    build_s: float = 0.0

    @property
    def n_vars(self) -> int:
        return sum(len(v) for v in self.model.component_objects(pyo.Var, descend_into=False))

    @property
    def n_constraints(self) -> int:
        return sum(len(c) for c in self.model.component_objects(pyo.Constraint))


def _lin(coefs: list[float], variables: list[Any], constant: float = 0.0) -> LinearExpression:
    return LinearExpression(constant=constant, linear_coefs=coefs, linear_vars=variables)


def build_model(
    table: CandidateTable, current: Plan | None = None, relax: bool = False
) -> MilpModel:
    """The §1 MILP over `table` (its LP relaxation with `relax=True`). Over 80
    lines on purpose: one block per family of variables and rows, in the SPEC's
    order, all sharing the same index lists; split, each block would take half a
    dozen of them as arguments."""
    t0 = time.monotonic()
    s = table.scenario
    pol = s.policy
    I, D = table.feasible.shape
    pair_i, pair_d = np.nonzero(table.feasible)  # row-major: pairs of type i contiguous
    P = len(pair_i)
    mu_max = pol.max_utilization
    load = table.load[pair_i, pair_d]
    gpr = table.gpus_per_replica.astype(np.float64)

    # Live plan, by deployment id.
    cc = costs.change_cost_per_gpu(pol) if current is not None else 0.0
    r_cur, change_const = live_replicas(table, current, cc)

    # Replica bounds: never more than availability allows, nor more than could ever
    # carry load (unless the live plan already runs more).
    total_load = np.zeros(D)
    np.add.at(total_load, pair_d, load)
    useful = np.ceil(total_load / mu_max - 1e-9).astype(np.int64)
    r_ub = np.minimum(table.max_replicas, np.maximum(useful, r_cur)).astype(np.int64)
    # a pair that loads nothing (a type with no demand) is bounded by 1 alone
    cap = mu_max * r_ub[pair_d].astype(np.float64)
    x_ub = np.minimum(1.0, np.divide(cap, load, out=np.ones_like(load), where=load > 0))

    has_z = pol.storage_capacity_gb is not None or bool(np.any(table.storage_cost > 0))

    m = pyo.ConcreteModel(name="llm_allocation")
    r_ub_l = r_ub.tolist()
    m.r = pyo.Var(
        range(D),
        domain=pyo.NonNegativeReals if relax else pyo.NonNegativeIntegers,
        bounds=lambda _m, d: (0, r_ub_l[d]),
    )
    x_ub_l = x_ub.tolist()
    m.x = pyo.Var(range(P), domain=pyo.NonNegativeReals, bounds=lambda _m, k: (0.0, x_ub_l[k]))
    umax = table.max_unmet.tolist()
    m.u = pyo.Var(range(I), domain=pyo.NonNegativeReals, bounds=lambda _m, i: (0.0, umax[i]))
    rs, xs, us = list(m.r.values()), list(m.x.values()), list(m.u.values())
    zs: list[Any] = []
    if has_z:
        m.z = pyo.Var(range(D), domain=pyo.UnitInterval if relax else pyo.Binary)
        zs = list(m.z.values())
    live = np.flatnonzero(r_cur > 0) if cc > 0 else np.zeros(0, dtype=np.int64)
    live_l = live.tolist()
    m.a = pyo.Var(range(len(live_l)), domain=pyo.NonNegativeReals)
    a_s = list(m.a.values())

    # Index lists: pairs of each type (contiguous) and of each candidate.
    starts = np.searchsorted(pair_i, np.arange(I + 1))
    by_i = [list(range(starts[i], starts[i + 1])) for i in range(I)]
    order = np.argsort(pair_d, kind="stable")
    dstarts = np.searchsorted(pair_d[order], np.arange(D + 1))
    by_d = [order[dstarts[d] : dstarts[d + 1]].tolist() for d in range(D)]
    load_l = load.tolist()

    # 1. coverage
    m.coverage = pyo.Constraint(
        range(I),
        rule=lambda _m, i: (
            1.0,
            _lin([1.0] * (len(by_i[i]) + 1), [xs[k] for k in by_i[i]] + [us[i]]),
            1.0,
        ),
    )
    # 2. capacity
    m.capacity = pyo.Constraint(
        range(D),
        rule=lambda _m, d: (
            None,
            _lin([load_l[k] for k in by_d[d]] + [-mu_max], [xs[k] for k in by_d[d]] + [rs[d]]),
            0.0,
        ),
    )
    # 3. availability (only GPU types whose candidates could exceed it)
    avail_rows = []
    for g in range(len(s.gpus)):
        on = np.flatnonzero(table.gpu == g)
        if on.size and float((gpr[on] * r_ub[on]).sum()) > table.gpu_available[g]:
            avail_rows.append((g, on.tolist()))
    m.availability = pyo.Constraint(
        range(len(avail_rows)),
        rule=lambda _m, k: (
            None,
            _lin([float(gpr[d]) for d in avail_rows[k][1]], [rs[d] for d in avail_rows[k][1]]),
            float(table.gpu_available[avail_rows[k][0]]),
        ),
    )
    # 4. accuracy (only types that have some pair above their bound)
    err = table.pairs.error[pair_i, pair_d]
    eps = table.max_error
    acc_types = [i for i in range(I) if by_i[i] and float(err[by_i[i]].max()) > eps[i]]
    err_l = err.tolist()
    m.accuracy = pyo.Constraint(
        acc_types,
        rule=lambda _m, i: (
            None,
            _lin(
                [err_l[k] for k in by_i[i]] + [float(eps[i])],
                [xs[k] for k in by_i[i]] + [us[i]],
            ),
            float(eps[i]),
        ),
    )
    # 5. budget, 6. storage
    rc = table.replica_cost.tolist()
    sc = table.storage_cost.tolist()
    if pol.budget is not None:
        m.budget = pyo.Constraint(
            expr=(None, _lin(rc + (sc if has_z else []), rs + zs), float(pol.budget))
        )
    if pol.storage_capacity_gb is not None:
        m.storage = pyo.Constraint(
            expr=(None, _lin(table.weight_gb.tolist(), zs), float(pol.storage_capacity_gb))
        )
    # 7. linking
    if has_z:
        m.link_up = pyo.Constraint(
            range(D), rule=lambda _m, d: (None, _lin([1.0, -float(r_ub_l[d])], [rs[d], zs[d]]), 0.0)
        )
        m.link_down = pyo.Constraint(
            range(D), rule=lambda _m, d: (None, _lin([1.0, -1.0], [zs[d], rs[d]]), 0.0)
        )
    # a_d ≥ |r_d − r_cur_d| for live deployments
    cur_l = [float(r_cur[d]) for d in live_l]
    m.change_up = pyo.Constraint(
        range(len(live_l)),
        rule=lambda _m, k: (None, _lin([1.0, -1.0], [rs[live_l[k]], a_s[k]]), cur_l[k]),
    )
    m.change_down = pyo.Constraint(
        range(len(live_l)),
        rule=lambda _m, k: (None, _lin([-1.0, -1.0], [rs[live_l[k]], a_s[k]]), -cur_l[k]),
    )

    # Objective: the evaluator's cost.total.
    r_coef = table.replica_cost.copy()
    if cc > 0:
        not_live = np.ones(D, dtype=bool)
        not_live[live] = False
        r_coef[not_live] += cc * gpr[not_live]
    delay = table.delay_cost[pair_i, pair_d]
    coefs = r_coef.tolist() + table.unmet_cost.tolist()
    variables = rs + us
    nz = np.flatnonzero(delay != 0.0)
    if nz.size:
        coefs += delay[nz].tolist()
        variables += [xs[k] for k in nz.tolist()]
    if has_z:
        coefs += sc
        variables += zs
    if live.size:
        coefs += (cc * gpr[live]).tolist()
        variables += a_s
    m.cost = pyo.Objective(expr=_lin(coefs, variables, change_const), sense=pyo.minimize)

    return MilpModel(
        model=m,
        table=table,
        pair_i=pair_i,
        pair_d=pair_d,
        r_ub=r_ub,
        r_cur=r_cur,
        change_const=change_const,
        relaxed=relax,
        has_z=has_z,
        build_s=time.monotonic() - t0,
    )


# --------------------------------------------------------------------------------------
# Writing and reading back


@dataclass
class WrittenModel:
    """The LP file of a model and the LP column names of each variable family
    (None where a variable does not appear in the file: its value is 0)."""

    path: Path
    r: list[str | None]
    x: list[str | None]
    u: list[str | None]
    z: list[str | None]
    write_s: float


def write_lp(mm: MilpModel, path: Path) -> WrittenModel:
    """Write the model in LP format with short generated labels (x1, c_e_x2_, …:
    fast, and no quoting issues with deployment ids) and keep the symbol map."""
    t0 = time.monotonic()
    m = mm.model
    _, smap_id = m.write(str(path), io_options={"symbolic_solver_labels": False})
    by_obj = m.solutions.symbol_map[smap_id].byObject

    def names(var: Any) -> list[str | None]:
        return [by_obj.get(id(v)) for v in var.values()]

    z = names(m.z) if mm.has_z else []
    return WrittenModel(path, names(m.r), names(m.x), names(m.u), z, time.monotonic() - t0)


@dataclass(frozen=True)
class Solution:
    r: np.ndarray  # (D,)
    x: np.ndarray  # (P,)
    u: np.ndarray  # (I,)
    z: np.ndarray  # (D,) (zeros when the model has no z)


def _values(names: list[str | None], values: dict[str, float]) -> np.ndarray:
    return np.array([values.get(n, 0.0) if n is not None else 0.0 for n in names])


def read_solution(mm: MilpModel, wm: WrittenModel, values: dict[str, float]) -> Solution:
    """Variable values by family, also loaded into the Pyomo model."""
    sol = Solution(
        _values(wm.r, values),
        _values(wm.x, values),
        _values(wm.u, values),
        _values(wm.z, values) if mm.has_z else np.zeros(len(wm.r)),
    )
    m = mm.model
    for var, arr in ((m.r, sol.r), (m.x, sol.x), (m.u, sol.u)):
        for v, val in zip(var.values(), arr.tolist(), strict=True):
            v.set_value(val, skip_validation=True)
    if mm.has_z:
        for v, val in zip(m.z.values(), sol.z.tolist(), strict=True):
            v.set_value(val, skip_validation=True)
    return sol


def solution_to_plan(mm: MilpModel, sol: Solution) -> Plan:
    """Replicas rounded to integers, routing < MIN_FRACTION (or onto a deployment
    whose replicas round to 0) dropped, and each type's routing rescaled so routed
    + unmet = 1 exactly when the drift is solver-tolerance sized."""
    t = mm.table
    s = t.scenario
    r = np.maximum(0, np.rint(sol.r)).astype(np.int64)
    x = np.where((sol.x >= MIN_FRACTION) & (r[mm.pair_d] > 0), sol.x, 0.0)
    u = np.clip(sol.u, 0.0, t.max_unmet)
    u = np.where(u < MIN_FRACTION, 0.0, u)
    I = len(s.query_types)
    served = np.zeros(I)
    np.add.at(served, mm.pair_i, x)
    target = 1.0 - u
    scale = np.ones(I)
    ok = (served > 0) & (np.abs(served - target) <= MAX_DRIFT)
    scale[ok] = target[ok] / served[ok]
    x = x * scale[mm.pair_i]
    _route_idle_types(mm, r, x, u)
    deployments = [t.deployment(d, int(r[d])) for d in np.flatnonzero(r > 0).tolist()]
    ids = t.ids
    routes = [
        Route(s.query_types[i].id, ids[d], float(x[k]))
        for k, (i, d) in enumerate(zip(mm.pair_i.tolist(), mm.pair_d.tolist(), strict=True))
        if x[k] > 0.0
    ]
    unmet = {s.query_types[i].id: float(u[i]) for i in range(I) if u[i] > 0.0}
    return Plan.build(deployments, routes, unmet)


def _route_idle_types(mm: MilpModel, r: np.ndarray, x: np.ndarray, u: np.ndarray) -> None:
    """A type with no demand loads nothing, so the model may route it to a candidate
    it rents no replica of, and that route is dropped with the candidate: the plan
    covered the type with nothing (coverage and unmet-cap violations). Its routing
    goes to a rented candidate that can serve it within its error bound instead
    (free: no load), the one with the most replicas; with none, it stays as the
    model left it."""
    rates = np.array([q.arrival_rate for q in mm.table.scenario.query_types])
    for i in np.flatnonzero(rates == 0.0).tolist():
        mine = np.flatnonzero(mm.pair_i == i)
        if mine.size == 0 or x[mine].sum() + u[i] >= 1.0 - MAX_DRIFT:
            continue
        d = mm.pair_d[mine]
        accurate = mm.table.pairs.error[i, d] <= mm.table.max_error[i]
        rented = mine[(r[d] > 0) & accurate]
        if rented.size == 0:
            continue
        x[mine] = 0.0
        x[rented[np.argmax(r[mm.pair_d[rented]])]] = 1.0 - u[i]


def plan_replicas(table: CandidateTable, plan: Plan) -> np.ndarray:
    """A plan's replica vector over the table (deployments not in it ignored)."""
    r = np.zeros(table.size, dtype=np.int64)
    for dep in plan.deployments:
        k = table.index.get(dep.id)
        if k is not None:
            r[k] = dep.replicas
    return r


def write_mipstart(mm: MilpModel, wm: WrittenModel, warm: Plan, path: Path) -> int:
    """CBC MIP-start file (solution-file rows `index name value`) with the warm
    plan's integer variables; CBC completes the continuous ones by an LP. Returns
    the number of values written (0: nothing usable)."""
    r = np.minimum(plan_replicas(mm.table, warm), mm.r_ub)
    rows: list[str] = []
    for d in np.flatnonzero(r > 0).tolist():
        if wm.r[d] is not None:
            rows.append(f"{len(rows)} {wm.r[d]} {int(r[d])}")
        if mm.has_z and wm.z[d] is not None:
            rows.append(f"{len(rows)} {wm.z[d]} 1")
    if rows:
        path.write_text("\n".join(rows) + "\n")
    return len(rows)
