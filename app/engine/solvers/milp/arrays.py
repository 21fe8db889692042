"""The §1 MILP in matrix form, built from the candidate table with numpy (no
Pyomo): the model the exact polish hands to a solver process, optionally
restricted to a subset of the candidates.

It is the same formulation as `app.engine.solvers.milp.model` (see its
docstring for the rows and bounds), column for column:

    r (Dk, integer) | x (P, continuous) | u (I) | z (Dk, binary; when storage is
    priced or capped) | a (live deployments; when a change cost applies)

where Dk are the candidates kept (all of them, or a restriction) and P the
feasible (type, candidate) pairs among them. Building it is a handful of array
operations (milliseconds at 200 query types, where the Pyomo model takes
seconds), and the arrays are what both backends take: HiGHS directly
(`passModel`), CBC through an MPS file written from them (`write_mps`).

A restricted model's optimum is a plan of the full problem (any plan over a
subset of the candidates is one), but its bound is not a bound of the full
problem: only a model built with every candidate (`restricted == False`) gives
one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.engine.plan import costs
from app.engine.plan.candidates import CandidateTable
from app.engine.plan.plan import Plan
from app.engine.solvers.state import AllocationState

# Routing fractions below this are solver noise and dropped.
MIN_FRACTION = 1e-9
# Coverage drift up to this much is renormalised away (solver tolerances).
MAX_DRIFT = 1e-4


@dataclass(frozen=True)
class MilpArrays:
    """A MILP `min c·v + offset, row_lower <= A v <= row_upper, col bounds,
    integrality` with A column-wise (CSC), and the maps back to the table."""

    col_cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray  # (n,) bool
    offset: float
    row_lower: np.ndarray
    row_upper: np.ndarray
    a_start: np.ndarray  # (n + 1,) int32
    a_index: np.ndarray  # (nnz,) int32 row indices
    a_value: np.ndarray  # (nnz,) float
    cand: np.ndarray  # (Dk,) table candidates kept, ascending
    pair_i: np.ndarray  # (P,) type of each x column
    pair_d: np.ndarray  # (P,) table candidate of each x column
    n_types: int
    has_z: bool
    live: np.ndarray  # (L,) table candidates with an `a` column
    restricted: bool

    @property
    def n_cols(self) -> int:
        return len(self.col_cost)

    @property
    def n_rows(self) -> int:
        return len(self.row_lower)

    @property
    def r0(self) -> int:
        return 0

    @property
    def x0(self) -> int:
        return len(self.cand)

    @property
    def u0(self) -> int:
        return self.x0 + len(self.pair_i)

    @property
    def z0(self) -> int:
        return self.u0 + self.n_types

    @property
    def a0(self) -> int:
        return self.z0 + (len(self.cand) if self.has_z else 0)

    def to_npz(self, path: Path) -> None:
        """What a solver child process needs (no table, no maps)."""
        np.savez(
            path,
            col_cost=self.col_cost,
            col_lower=self.col_lower,
            col_upper=self.col_upper,
            integer=self.integer,
            offset=np.array([self.offset]),
            row_lower=self.row_lower,
            row_upper=self.row_upper,
            a_start=self.a_start,
            a_index=self.a_index,
            a_value=self.a_value,
        )


class _Rows:
    """Accumulates COO triplets and row bounds."""

    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.n = 0

    def add(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        vals: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
    ) -> None:
        """Entries with row indices local to this block (0 .. len(lo) − 1)."""
        self.r.append(np.asarray(rows, dtype=np.int64) + self.n)
        self.c.append(np.asarray(cols, dtype=np.int64))
        self.v.append(np.asarray(vals, dtype=np.float64))
        self.lo.append(np.asarray(lo, dtype=np.float64))
        self.hi.append(np.asarray(hi, dtype=np.float64))
        self.n += len(lo)

    def csc(self, n_cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = np.concatenate(self.r) if self.r else np.zeros(0, dtype=np.int64)
        cols = np.concatenate(self.c) if self.c else np.zeros(0, dtype=np.int64)
        vals = np.concatenate(self.v) if self.v else np.zeros(0)
        keep = vals != 0.0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        order = np.lexsort((rows, cols))
        start = np.zeros(n_cols + 1, dtype=np.int64)
        np.add.at(start, cols + 1, 1)
        return (
            np.cumsum(start).astype(np.int32),
            rows[order].astype(np.int32),
            vals[order],
        )


def live_replicas(
    table: CandidateTable, current: Plan | None, cost_per_gpu: float
) -> tuple[np.ndarray, float]:
    """(D,) live replicas per candidate and the change cost (at `cost_per_gpu`)
    of live deployments the table cannot hold (stopped for sure), when a change
    cost applies (`current` given and `cost_per_gpu` > 0)."""
    cc = cost_per_gpu
    r_cur = np.zeros(table.size, dtype=np.int64)
    const = 0.0
    if current is not None and cc > 0:
        for dep in current.deployments:
            k = table.index.get(dep.id)
            if k is None:
                const += cc * dep.gpus
            else:
                r_cur[k] = dep.replicas
    return r_cur, const


def build_arrays(
    table: CandidateTable,
    current: Plan | None = None,
    keep: np.ndarray | None = None,
    relax: bool = False,
) -> MilpArrays:
    """The §1 MILP over `table` (only the candidates where `keep` is true, when
    given; the LP relaxation with `relax`). Rows that can never bind are not
    written, as in the Pyomo model. Over 80 lines: one row block after the
    other, in the order of the formulation, reads better than split."""
    s = table.scenario
    pol = s.policy
    I = len(s.query_types)
    cand = np.arange(table.size) if keep is None else np.flatnonzero(keep)
    Dk = len(cand)
    pos = np.full(table.size, -1, dtype=np.int64)
    pos[cand] = np.arange(Dk)
    feas = table.feasible[:, cand]
    pi, pk = np.nonzero(feas)  # pairs of type i contiguous; pk local candidate index
    pair_d = cand[pk]
    P = len(pi)
    mu_max = pol.max_utilization
    load = table.load[pi, pair_d]
    gpr = table.gpus_per_replica[cand].astype(np.float64)

    cc = costs.change_cost_per_gpu(pol) if current is not None else 0.0
    r_cur_all, change_const = live_replicas(table, current, cc)
    r_cur = r_cur_all[cand]
    # Live deployments outside the restriction are stopped: their change is a constant.
    if cc > 0 and keep is not None:
        dropped = np.flatnonzero((r_cur_all > 0) & ~np.asarray(keep, dtype=bool))
        change_const += float((cc * table.gpus_per_replica[dropped] * r_cur_all[dropped]).sum())

    total_load = np.zeros(Dk)
    np.add.at(total_load, pk, load)
    useful = np.ceil(total_load / mu_max - 1e-9).astype(np.int64)
    r_ub = np.minimum(table.max_replicas[cand], np.maximum(useful, r_cur)).astype(np.float64)
    # a pair that loads nothing (a type with no demand) is bounded by 1 alone
    x_ub = np.minimum(
        1.0, np.divide(mu_max * r_ub[pk], load, out=np.ones_like(load), where=load > 0)
    )
    has_z = pol.storage_capacity_gb is not None or bool(np.any(table.storage_cost > 0))
    live_k = np.flatnonzero(r_cur > 0) if cc > 0 else np.zeros(0, dtype=np.int64)
    L = len(live_k)

    x0, u0 = Dk, Dk + P
    z0 = u0 + I
    a0 = z0 + (Dk if has_z else 0)
    n = a0 + L
    lower = np.zeros(n)
    upper = np.concatenate(
        [r_ub, x_ub, table.max_unmet, np.ones(Dk if has_z else 0), np.full(L, np.inf)]
    )
    integer = np.zeros(n, dtype=bool)
    if not relax:
        integer[:Dk] = True
        if has_z:
            integer[z0:a0] = True

    rows = _Rows()
    # 1. coverage: Σ_d x_id + u_i = 1
    rows.add(
        np.concatenate([pi, np.arange(I)]),
        np.concatenate([x0 + np.arange(P), u0 + np.arange(I)]),
        np.ones(P + I),
        np.ones(I),
        np.ones(I),
    )
    # 2. capacity: Σ_i load_id x_id − μ r_d ≤ 0
    rows.add(
        np.concatenate([pk, np.arange(Dk)]),
        np.concatenate([x0 + np.arange(P), np.arange(Dk)]),
        np.concatenate([load, np.full(Dk, -mu_max)]),
        np.full(Dk, -np.inf),
        np.zeros(Dk),
    )
    # 3. availability (GPU types whose candidates could exceed it)
    g_of = table.gpu[cand]
    need = np.zeros(len(s.gpus))
    np.add.at(need, g_of, gpr * r_ub)
    avail_g = np.flatnonzero(need > table.gpu_available)
    if avail_g.size:
        row_of = np.full(len(s.gpus), -1)
        row_of[avail_g] = np.arange(avail_g.size)
        on = np.flatnonzero(row_of[g_of] >= 0)
        rows.add(
            row_of[g_of[on]],
            on,
            gpr[on],
            np.full(avail_g.size, -np.inf),
            table.gpu_available[avail_g].astype(np.float64),
        )
    # 4. accuracy: Σ_d e_id x_id + ε_i u_i ≤ ε_i (types with a pair above ε_i)
    err = table.pairs.error[pi, pair_d]
    eps = table.max_error
    worst = np.full(I, -np.inf)
    np.maximum.at(worst, pi, err)
    acc_t = np.flatnonzero(worst > eps)
    if acc_t.size:
        row_of = np.full(I, -1)
        row_of[acc_t] = np.arange(acc_t.size)
        on = np.flatnonzero(row_of[pi] >= 0)
        rows.add(
            np.concatenate([row_of[pi[on]], np.arange(acc_t.size)]),
            np.concatenate([x0 + on, u0 + acc_t]),
            np.concatenate([err[on], eps[acc_t]]),
            np.full(acc_t.size, -np.inf),
            eps[acc_t],
        )
    rc = table.replica_cost[cand]
    sc = table.storage_cost[cand]
    # 5. budget, 6. storage
    if pol.budget is not None:
        cols = np.arange(Dk) if not has_z else np.concatenate([np.arange(Dk), z0 + np.arange(Dk)])
        vals = rc if not has_z else np.concatenate([rc, sc])
        rows.add(
            np.zeros(len(cols)), cols, vals, np.array([-np.inf]), np.array([float(pol.budget)])
        )
    if pol.storage_capacity_gb is not None:
        rows.add(
            np.zeros(Dk),
            z0 + np.arange(Dk),
            table.weight_gb[cand],
            np.array([-np.inf]),
            np.array([float(pol.storage_capacity_gb)]),
        )
    # 7. linking: r_d − R_d z_d ≤ 0, z_d − r_d ≤ 0
    if has_z:
        k = np.arange(Dk)
        rows.add(
            np.concatenate([k, k]), np.concatenate([k, z0 + k]),
            np.concatenate([np.ones(Dk), -r_ub]), np.full(Dk, -np.inf), np.zeros(Dk),
        )  # fmt: skip
        rows.add(
            np.concatenate([k, k]), np.concatenate([z0 + k, k]),
            np.concatenate([np.ones(Dk), -np.ones(Dk)]), np.full(Dk, -np.inf), np.zeros(Dk),
        )  # fmt: skip
    # a_d ≥ |r_d − r_cur_d| for live deployments
    if L:
        k = np.arange(L)
        cur = r_cur[live_k].astype(np.float64)
        rows.add(
            np.concatenate([k, k]), np.concatenate([live_k, a0 + k]),
            np.concatenate([np.ones(L), -np.ones(L)]), np.full(L, -np.inf), cur,
        )  # fmt: skip
        rows.add(
            np.concatenate([k, k]), np.concatenate([live_k, a0 + k]),
            np.concatenate([-np.ones(L), -np.ones(L)]), np.full(L, -np.inf), -cur,
        )  # fmt: skip

    # Objective: the evaluator's cost.total.
    r_coef = rc.copy()
    if cc > 0:
        not_live = np.ones(Dk, dtype=bool)
        not_live[live_k] = False
        r_coef[not_live] += cc * gpr[not_live]
    cost = np.concatenate(
        [
            r_coef,
            table.delay_cost[pi, pair_d],
            table.unmet_cost,
            sc if has_z else np.zeros(0),
            cc * gpr[live_k],
        ]
    )
    start, index, value = rows.csc(n)
    return MilpArrays(
        col_cost=cost,
        col_lower=lower,
        col_upper=upper,
        integer=integer,
        offset=change_const,
        row_lower=np.concatenate(rows.lo) if rows.lo else np.zeros(0),
        row_upper=np.concatenate(rows.hi) if rows.hi else np.zeros(0),
        a_start=start,
        a_index=index,
        a_value=value,
        cand=cand,
        pair_i=pi,
        pair_d=pair_d,
        n_types=I,
        has_z=has_z,
        live=cand[live_k],
        restricted=keep is not None,
    )


def start_vector(ma: MilpArrays, st: AllocationState) -> np.ndarray:
    """A full column vector for a state (a MIP start): its replicas (clipped to the
    model's bounds), routing on the kept candidates, unmet, z and a."""
    v = np.zeros(ma.n_cols)
    r = np.minimum(st.r[ma.cand], ma.col_upper[: ma.x0])
    v[: ma.x0] = r
    v[ma.x0 : ma.u0] = st.x[ma.pair_i, ma.pair_d]
    v[ma.u0 : ma.z0] = np.minimum(1.0, st.u + st.uncovered())
    if ma.has_z:
        v[ma.z0 : ma.a0] = (r > 0).astype(np.float64)
    if len(ma.live):
        pos = np.searchsorted(ma.cand, ma.live)
        v[ma.a0 :] = np.abs(r[pos] - st.r_cur[ma.live])
    return v


def state_from_values(
    ma: MilpArrays, table: CandidateTable, values: np.ndarray, current: Plan | None = None
) -> AllocationState:
    """A solver's column values as an allocation state: replicas rounded, routing
    below `MIN_FRACTION` (or onto a candidate with no replica) dropped, each
    type's routing rescaled so routed + unmet = 1 when the drift is solver-tolerance
    sized (more is left for the evaluator to report)."""
    st = AllocationState(table, current)
    r = np.maximum(0, np.rint(values[: ma.x0])).astype(np.int64)
    for k in np.flatnonzero(r > 0):
        st.set_replicas(int(ma.cand[k]), int(r[k]))
    x = values[ma.x0 : ma.u0]
    x = np.where((x >= MIN_FRACTION) & (st.r[ma.pair_d] > 0), x, 0.0)
    u = np.clip(values[ma.u0 : ma.z0], 0.0, table.max_unmet)
    u = np.where(u < MIN_FRACTION, 0.0, u)
    served = np.zeros(ma.n_types)
    np.add.at(served, ma.pair_i, x)
    target = 1.0 - u
    scale = np.ones(ma.n_types)
    ok = (served > 0) & (np.abs(served - target) <= MAX_DRIFT)
    scale[ok] = target[ok] / served[ok]
    x = x * scale[ma.pair_i]
    for k in np.flatnonzero(x > 0):
        st.route(int(ma.pair_i[k]), int(ma.pair_d[k]), float(x[k]))
    st.u[:] = u
    return st


def write_mps(ma: MilpArrays, path: Path) -> list[str]:
    """Free-format MPS file of the model for CBC; returns the column names
    (C0, C1, …; rows R0, …). The objective's constant (`offset`) is not written
    (readers disagree on its sign): add it to the solver's objective."""
    n = ma.n_cols
    names = [f"C{k}" for k in range(n)]
    lines = ["NAME llm_allocation", "ROWS", " N OBJ"]
    lo, hi = ma.row_lower, ma.row_upper
    kinds = np.where(lo == hi, "E", np.where(np.isfinite(hi) & ~np.isfinite(lo), "L", "G"))
    both = np.isfinite(lo) & np.isfinite(hi) & (lo != hi)
    kinds = np.where(both, "L", kinds)
    lines += [f" {k} R{j}" for j, k in enumerate(kinds.tolist())]
    lines.append("COLUMNS")
    in_int = False
    start = ma.a_start.tolist()
    index = ma.a_index.tolist()
    value = ma.a_value.tolist()
    cost = ma.col_cost.tolist()
    integer = ma.integer.tolist()
    for c in range(n):
        if integer[c] != in_int:
            lines.append(" MARKER 'MARKER' " + ("'INTORG'" if integer[c] else "'INTEND'"))
            in_int = integer[c]
        name = names[c]
        lines.append(f" {name} OBJ {cost[c]!r}")
        lines += [f" {name} R{index[k]} {value[k]!r}" for k in range(start[c], start[c + 1])]
    if in_int:
        lines.append(" MARKER 'MARKER' 'INTEND'")
    lines.append("RHS")
    rhs = np.where(kinds == "G", lo, hi)
    for j in np.flatnonzero(rhs != 0.0).tolist():
        lines.append(f" RHS R{j} {float(rhs[j])!r}")
    if both.any():
        lines.append("RANGES")
        for j in np.flatnonzero(both).tolist():
            lines.append(f" RNG R{j} {float(hi[j] - lo[j])!r}")
    lines.append("BOUNDS")
    for c, u in enumerate(ma.col_upper.tolist()):
        if math.isfinite(u):
            lines.append(f" UP BND {names[c]} {u!r}")
        elif integer[c]:
            lines.append(f" PL BND {names[c]}")
    lines.append("ENDATA")
    path.write_text("\n".join(lines) + "\n")
    return names
