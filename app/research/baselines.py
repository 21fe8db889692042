"""The paper v2's baselines, on the same candidate table as every other solver and
checked by the one evaluator (their own sums are never reported).

* **LPR** — LP relaxation then rounding (`lpr`): solve the §1 LP relaxation, keep
  its routing, round each deployment's replicas *up* to carry the routed load,
  then repair availability by closing deployments and re-routing their traffic.
* **DVR** — decoupled provisioning then routing (`dvr`): pick deployments and size
  them by capacity alone, then route optimally (an LP) over what was provisioned.
* **HF** — homogeneous fleet (`hf`): the best plan that uses a single GPU type.

Each returns a `BaselineResult`; a baseline that cannot produce a feasible plan
says so (`feasible=False`, the evaluator's violations, a message) rather than
raising.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.model.domain import Scenario
from app.engine.perf.profiles import EngineProfile
from app.engine.plan.candidates import CandidateTable, candidate_table
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.evaluation import Evaluation, plan_document
from app.engine.plan.plan import Plan
from app.engine.solvers.greedy import greedy
from app.engine.solvers.milp.audit import solve_milp
from app.engine.solvers.milp.backends.cbc import run_cbc
from app.engine.solvers.milp.model import (
    MilpModel,
    Solution,
    build_model,
    read_solution,
    solution_to_plan,
    write_lp,
)
from app.engine.solvers.milp.relaxation import lp_relaxation

BASELINES = ("lpr", "dvr", "hf")
_EPS = 1e-9


@dataclass(frozen=True)
class BaselineResult:
    name: str
    plan: Plan | None
    evaluation: Evaluation | None
    wall_s: float
    message: str = ""
    scenario: Scenario | None = field(default=None, repr=False)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return self.evaluation is not None and self.evaluation.feasible

    @property
    def objective(self) -> float | None:
        return self.evaluation.cost.total if self.evaluation is not None else None

    def to_document(self) -> dict[str, Any]:
        return {
            "baseline": self.name,
            "feasible": self.feasible,
            "objective": self.objective,
            "wall_s": self.wall_s,
            "message": self.message,
            "details": dict(self.details),
            "plan": (
                plan_document(self.plan, self.evaluation)
                if self.plan is not None and self.evaluation is not None and self.scenario
                else None
            ),
        }


def run_baseline(
    name: str,
    scenario: Scenario,
    time_limit_s: float = 60.0,
    table: CandidateTable | None = None,
    profile: EngineProfile | None = None,
    cancel: threading.Event | None = None,
) -> BaselineResult:
    """Dispatch by name ("lpr", "dvr", "hf")."""
    fns = {"lpr": lpr, "dvr": dvr, "hf": hf}
    if name not in fns:
        raise ValueError(f"baseline must be one of {BASELINES}, not {name!r}")
    return fns[name](
        scenario, time_limit_s=time_limit_s, table=table, profile=profile, cancel=cancel
    )


# --------------------------------------------------------------------------------------
# helpers


def subtable(table: CandidateTable, keep: np.ndarray) -> CandidateTable:
    """The candidate table restricted to the candidates where `keep` is true."""
    return CandidateTable(
        scenario=table.scenario,
        profile=table.profile,
        model=table.model[keep],
        gpu=table.gpu[keep],
        precision=table.precision[keep],
        tp=table.tp[keep],
        pp=table.pp[keep],
        pairs=table.pairs.select(keep),
    )


def _finish(
    name: str,
    scenario: Scenario,
    plan: Plan | None,
    t0: float,
    message: str,
    profile: EngineProfile | None,
    **details: Any,
) -> BaselineResult:
    ev = evaluate_plan(scenario, plan, profile=profile) if plan is not None else None
    if ev is not None and not ev.feasible and not message:
        message = "; ".join(v.message for v in ev.violations[:3])
    return BaselineResult(name, plan, ev, time.monotonic() - t0, message, scenario, details)


def _routing_lp(
    table: CandidateTable,
    replicas: np.ndarray,
    time_limit_s: float,
    cancel: threading.Event | None,
) -> tuple[MilpModel, Solution | None, str]:
    """Optimal routing (x, u) over fixed replicas: the §1 LP with r pinned."""

    mm = build_model(table, relax=True)
    for d, v in enumerate(mm.model.r.values()):
        val = float(min(replicas[d], mm.r_ub[d])) if replicas[d] > 0 else 0.0
        v.setlb(val)
        v.setub(val)
    if mm.has_z:
        for d, v in enumerate(mm.model.z.values()):
            v.setlb(1.0 if replicas[d] > 0 else 0.0)
            v.setub(1.0 if replicas[d] > 0 else 0.0)
    with tempfile.TemporaryDirectory(prefix="llm-allocator-route-") as tmp:
        wm = write_lp(mm, Path(tmp) / "route.lp")
        out = run_cbc(wm.path, max(0.1, time_limit_s), 0.0, 1, cancel)
        sol = read_solution(mm, wm, out.values) if out.has_solution else None
    if out.termination != "optimal":
        sol = None
    if sol is not None:
        # the LP file may drop pinned columns: the pinned value is the value
        sol = Solution(np.minimum(replicas, mm.r_ub).astype(float), sol.x, sol.u, sol.z)
    return mm, sol, out.termination


# --------------------------------------------------------------------------------------
# LPR


def lpr(
    scenario: Scenario,
    time_limit_s: float = 60.0,
    table: CandidateTable | None = None,
    profile: EngineProfile | None = None,
    cancel: threading.Event | None = None,
) -> BaselineResult:
    """LP relaxation + greedy rounding. (One function on purpose: the baseline is
    the paper's four steps in order, and reads best as they are written.)

    1. Solve the LP relaxation of the §1 MILP (replicas and the active flag
       continuous); keep its routing x and unmet u (fractions < 1e-9 dropped).
    2. Round up: r_d = ceil(Σ_i load_id·x_id / max_utilization), the fewest whole
       replicas that carry the routed load.
    3. Repair availability: while a GPU type is over, close its active deployment
       with the least load and move each type's share of it (within the type's
       accuracy slack) onto the spare capacity of other active deployments
       (lowest error first), then onto extra replicas of active deployments on
       GPU types with free GPUs (cheapest per share first), then to unmet within
       `max_unmet_fraction`; if some is left, the repair failed and says so.
    Budget and storage are not repaired: rounding up can break them, and the
    evaluator then says so (the baseline reports infeasible).
    """
    t0 = time.monotonic()
    if table is None:
        table = candidate_table(scenario, profile)
    lp = lp_relaxation(scenario, time_limit_s=time_limit_s, table=table, cancel=cancel)
    if lp.solution is None:
        return _finish(
            "lpr", scenario, None, t0, f"LP relaxation: {lp.status}", profile, lp_status=lp.status
        )
    mm, sol = lp.model, lp.solution
    t = table
    I, D = t.feasible.shape
    mu_max = scenario.policy.max_utilization
    x = np.zeros((I, D))
    xv = np.where(sol.x >= _EPS, sol.x, 0.0)
    x[mm.pair_i, mm.pair_d] = xv
    u = np.clip(sol.u, 0.0, t.max_unmet)
    load = np.where(t.feasible, t.load, 0.0)
    err = np.where(np.isfinite(t.pairs.error), t.pairs.error, 1.0)

    def replicas_for(d: int) -> int:
        need = float((load[:, d] * x[:, d]).sum()) / mu_max
        return math.ceil(need - 1e-9) if need > _EPS else 0

    r = np.array([replicas_for(d) for d in range(D)], dtype=np.int64)
    closed = 0
    stuck = False
    for g in range(len(scenario.gpus)):
        on = np.flatnonzero(t.gpu == g)
        while (t.gpus_per_replica[on] * r[on]).sum() > t.gpu_available[g]:
            active = on[r[on] > 0]
            if active.size == 0:
                break
            dep_load = (load[:, active] * x[:, active]).sum(axis=0)
            d = int(active[np.argmin(dep_load)])
            r[d] = 0
            closed += 1
            for i in np.flatnonzero(x[:, d] > 0):
                amount = float(x[i, d])
                x[i, d] = 0.0
                slack = t.max_error[i] * (1.0 - u[i]) - float((err[i] * x[i]).sum())
                targets = np.flatnonzero((r > 0) & t.feasible[i])
                # (a) spare capacity of active deployments, lowest error first;
                # (b) extra replicas of active deployments on GPU types with free
                #     GPUs, cheapest per share of the type first
                with np.errstate(invalid="ignore"):
                    per_share = t.replica_cost[targets] * load[i, targets]
                passes = (
                    (targets[np.argsort(err[i, targets], kind="stable")], False),
                    (targets[np.argsort(per_share, kind="stable")], True),
                )
                for order, grow in passes:
                    for d2 in order:
                        if amount <= _EPS:
                            break
                        g2 = int(t.gpu[d2])
                        extra_r = 0
                        if grow and g2 != g:
                            on2 = t.gpu == g2
                            used = int((t.gpus_per_replica[on2] * r[on2]).sum())
                            extra_r = max(0, int(t.gpu_available[g2]) - used) // int(
                                t.gpus_per_replica[d2]
                            )
                        spare = mu_max * (r[d2] + extra_r) - float((load[:, d2] * x[:, d2]).sum())
                        can = min(amount, spare / load[i, d2]) if spare > 0 else 0.0
                        # the moved share must fit the type's accuracy slack
                        # (computed with the closed deployment's share removed)
                        if err[i, d2] > 0:
                            can = min(can, max(0.0, slack) / err[i, d2])
                        if can <= _EPS:
                            continue
                        x[i, d2] += can
                        slack -= err[i, d2] * can
                        amount -= can
                        if grow:
                            r[d2] = max(r[d2], replicas_for(int(d2)))
                if amount > _EPS:
                    extra = min(amount, t.max_unmet[i] - u[i])
                    if extra > 0:
                        u[i] += extra
                        amount -= extra
                if amount > _EPS:
                    stuck = True
                    # nowhere to go: leave it routed (the evaluator reports the break)
                    x[i, d] += amount
            if stuck:
                r[d] = replicas_for(d)
                break
    pairs_x = x[mm.pair_i, mm.pair_d]
    plan = solution_to_plan(mm, Solution(r.astype(float), pairs_x, u, (r > 0).astype(float)))
    msg = "availability repair failed: traffic had nowhere to go" if stuck else ""
    return _finish(
        "lpr", scenario, plan, t0, msg, profile, lp_bound=lp.bound, closed_deployments=closed
    )


# --------------------------------------------------------------------------------------
# DVR


def dvr(
    scenario: Scenario,
    time_limit_s: float = 60.0,
    table: CandidateTable | None = None,
    profile: EngineProfile | None = None,
    cancel: threading.Event | None = None,
) -> BaselineResult:
    """Decoupled: provision first, route second.

    1. Provisioning by capacity alone: for each query type (highest arrival rate
       first) take the candidate with the lowest rental per unit of capacity
       for it, replica_cost_d·load_id (the whole type on d), among those meeting the
       type's error bound on their own and whose GPU type still has room for the
       replicas the type needs (and within the budget and storage capacity, if
       set); replicas are sized for the load assigned so far
       (ceil(Σ load / max_utilization)); when the cheapest has room for only part
       of the type, the rest goes to the next cheapest. Replica rounding, sharing
       and delay penalties are not considered — that is the decoupling. Demand
       that finds no room gets no capacity (it can only go unmet).
    2. Routing: with those replicas fixed, solve the routing LP (coverage,
       capacity, accuracy, unmet; minimising unmet and delay penalties).
    """
    t0 = time.monotonic()
    if table is None:
        table = candidate_table(scenario, profile)
    t = table
    D = t.size
    mu_max = scenario.policy.max_utilization
    err = np.where(np.isfinite(t.pairs.error), t.pairs.error, 1.0)
    assigned = np.zeros(D)  # replica-units of load per candidate
    r = np.zeros(D, dtype=np.int64)
    gpu_free = t.gpu_available.astype(np.int64).copy()
    pol = scenario.policy
    budget = math.inf if pol.budget is None else pol.budget
    storage_cap = math.inf if pol.storage_capacity_gb is None else pol.storage_capacity_gb
    spend = stored = 0.0
    unplaced: list[str] = []
    for i in np.argsort(-t.arrival, kind="stable"):
        ok = t.feasible[i] & (err[i] <= t.max_error[i])
        with np.errstate(invalid="ignore"):
            price = np.where(ok, t.replica_cost * t.load[i], np.inf)
        left = 1.0  # share of the type still to provision for
        for d in np.argsort(price, kind="stable"):
            if left <= _EPS or not np.isfinite(price[d]):
                break
            gpr, rc = int(t.gpus_per_replica[d]), float(t.replica_cost[d])
            opening = r[d] == 0
            fixed = float(t.storage_cost[d]) if opening else 0.0
            if opening and stored + float(t.weight_gb[d]) > storage_cap + 1e-9:
                continue
            need = math.ceil((assigned[d] + left * t.load[i, d]) / mu_max - 1e-9)
            room = int(gpu_free[t.gpu[d]] // gpr)
            if rc > 0 and math.isfinite(budget):
                room = min(room, math.floor((budget - spend - fixed) / rc + 1e-9))
            new_r = min(need, int(r[d]) + max(0, room))
            share = min(left, (mu_max * new_r - assigned[d]) / t.load[i, d])
            if new_r <= 0 or share <= _EPS:
                continue
            spend += (new_r - r[d]) * rc + fixed
            stored += float(t.weight_gb[d]) if opening else 0.0
            gpu_free[t.gpu[d]] -= (new_r - r[d]) * gpr
            assigned[d] += share * t.load[i, d]
            r[d] = new_r
            left -= share
        if left > _EPS:
            unplaced.append(scenario.query_types[i].id)
    mm, sol, status = _routing_lp(t, r, time_limit_s - (time.monotonic() - t0), cancel)
    if sol is None:
        msg = f"routing LP over the provisioned fleet: {status}"
        if unplaced:
            msg += f" (capacity provisioned for only part of {', '.join(unplaced)})"
        return _finish(
            "dvr", scenario, None, t0, msg, profile, routing_status=status, unplaced=unplaced
        )
    plan = solution_to_plan(mm, sol)
    return _finish("dvr", scenario, plan, t0, "", profile, routing_status=status, unplaced=unplaced)


# --------------------------------------------------------------------------------------
# HF


def hf(
    scenario: Scenario,
    time_limit_s: float = 60.0,
    table: CandidateTable | None = None,
    profile: EngineProfile | None = None,
    cancel: threading.Event | None = None,
    method: str = "milp",
) -> BaselineResult:
    """Homogeneous fleet: restrict the candidates to one GPU type at a time, plan
    with GH on that sub-table and (method "milp", the default) improve it with the
    MILP restricted to that type, GH's plan as its warm start, within an equal
    share of the time limit; keep the cheapest feasible plan over the types. If no
    single GPU type can serve the demand the result is infeasible (the plan of the
    type with the fewest violations is returned for inspection)."""

    t0 = time.monotonic()
    if table is None:
        table = candidate_table(scenario, profile)
    types = sorted({int(g) for g in table.gpu})
    per_type: dict[str, float | None] = {}
    best: tuple[tuple[int, float], Plan, str] | None = None
    for k, g in enumerate(types):
        if cancel is not None and cancel.is_set():
            break
        sub = subtable(table, table.gpu == g)
        gid = scenario.gpus[g].id
        plan = greedy(sub).to_plan()
        if method == "milp":
            share = (time_limit_s - (time.monotonic() - t0)) / (len(types) - k)
            if share > 0.2:
                res = solve_milp(
                    scenario,
                    time_limit_s=share,
                    warm_start=plan,
                    table=sub,
                    cancel=cancel,
                    profile=profile,
                )
                if res.plan is not None and res.evaluation is not None and res.feasible:
                    ev_gh = evaluate_plan(scenario, plan, profile=profile)
                    if not ev_gh.feasible or res.evaluation.cost.total <= ev_gh.cost.total:
                        plan = res.plan
        ev = evaluate_plan(scenario, plan, profile=profile)
        per_type[gid] = ev.cost.total if ev.feasible else None
        key = (len(ev.violations), ev.cost.total)
        if best is None or key < best[0]:
            best = (key, plan, gid)
    if best is None:
        return _finish(
            "hf", scenario, None, t0, "no GPU type has a candidate", profile, per_gpu=per_type
        )
    _, plan, gid = best
    result = _finish(
        "hf", scenario, plan, t0, "", profile, gpu=gid, per_gpu=per_type, method=method
    )
    if not result.feasible:
        msg = f"no single GPU type can serve the demand (closest: {gid}: {result.message})"
        return replace(result, message=msg)
    return result
