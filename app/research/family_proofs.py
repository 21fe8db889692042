"""What can be proven about a scenario of the instance families without a solver:
a reference plan (dedicated replicas of the cheapest candidate, or two-candidate mix
at the error bound, per type), lower bounds on GPUs and dollars, and from them
`certify` (feasible / infeasible / unknown) and `budget_binding_proof`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.model.domain import Scenario
from app.engine.model.schemas import parse_scenario
from app.engine.plan.candidates import candidate_table

Document = dict[str, Any]


@dataclass(frozen=True)
class _Reference:
    """A dedicated plan: type i on candidate d_i with r_i replicas (-1: none)."""

    cand: np.ndarray  # (I,) candidate index or -1
    replicas: np.ndarray  # (I,)
    gpus_by_type: np.ndarray  # (G,) GPUs the plan uses per GPU type
    spend: float  # rental per horizon


def _table(s: Scenario) -> Any:

    return candidate_table(s)


def _reference_plan(
    table: Any, rng: np.random.Generator | None, share: np.ndarray | None = None
) -> _Reference:
    """For each type: a GPU type drawn at random among those where dedicated
    replicas of a candidate that meets the type's error bound alone cost at most 2x
    the cheapest such option (rng None: the cheapest overall), and on it the
    candidate with the cheapest dedicated replicas for `share` of its demand."""
    I, _ = table.feasible.shape
    G = len(table.scenario.gpus)
    mu = table.scenario.policy.max_utilization
    share = np.ones(I) if share is None else share
    ok = table.feasible & (table.pairs.error <= table.max_error[:, None] + 1e-12)
    cand = np.full(I, -1, dtype=np.int64)
    reps = np.zeros(I, dtype=np.int64)
    use = np.zeros(G, dtype=np.int64)
    spend = 0.0
    for i in range(I):
        if not ok[i].any():
            continue
        with np.errstate(invalid="ignore"):
            r = np.where(ok[i], np.ceil(share[i] * table.load[i] / mu - 1e-9), np.inf)
        cost = r * table.replica_cost
        if rng is not None:
            # a GPU type whose cheapest dedicated option is within 2x of the best
            gs = np.unique(table.gpu[ok[i]])
            per_g = np.array([cost[table.gpu == g].min() for g in gs])
            g = int(rng.choice(gs[per_g <= 2.0 * per_g.min() + 1e-9]))
            cost = np.where(table.gpu == g, cost, np.inf)
        d = int(np.argmin(cost))
        cand[i], reps[i] = d, int(r[d])
        use[table.gpu[d]] += int(r[d]) * int(table.gpus_per_replica[d])
        spend += float(cost[d])
    return _Reference(cand, reps, use, spend)


def _lower_bounds(table: Any, share: np.ndarray | None = None) -> tuple[float, float]:
    """(GPUs, $) any plan needs to serve `share` of each type, accuracy and
    integrality ignored: Σ_i share_i · min_d load_id / max_util · (GPUs | $ per replica)."""
    I, _ = table.feasible.shape
    share = np.ones(I) if share is None else share
    mu = table.scenario.policy.max_utilization
    with np.errstate(invalid="ignore"):
        per = np.where(table.feasible, table.load / mu, np.inf)
        gpus = (per * table.gpus_per_replica).min(axis=1, initial=np.inf)
        money = (per * table.replica_cost).min(axis=1, initial=np.inf)
    return float((share * gpus).sum()), float((share * money).sum())


def _type_options(
    table: Any, i: int, share: float, rounded: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every way to serve `share` of type i alone on one candidate or on a
    two-candidate mix whose traffic-weighted error is exactly its bound (the
    vertices an LP for one type uses): arrays (cost, cand_a, reps_a, cand_b,
    reps_b), cand_b = -1 for single candidates. `rounded` takes whole replicas."""
    mu = table.scenario.policy.max_utilization
    f = np.flatnonzero(table.feasible[i])
    e = table.pairs.error[i, f]
    eps = float(table.max_error[i])
    need = share * table.load[i, f] / mu  # replicas if routed whole
    rc = table.replica_cost[f]

    def reps(frac: np.ndarray, k: np.ndarray) -> np.ndarray:
        r = frac * need[k]
        return np.where(frac > 1e-12, np.ceil(r - 1e-9), 0.0) if rounded else r

    a = np.flatnonzero(e <= eps + 1e-12)
    b = np.flatnonzero(e > eps + 1e-12)
    ra = reps(np.ones(a.size), a)
    cost, ca, rA, cb, rB = [ra * rc[a]], [f[a]], [ra], [np.full(a.size, -1)], [np.zeros(a.size)]
    if a.size and b.size:
        theta = (e[b][None, :] - eps) / (e[b][None, :] - e[a][:, None])  # share on a
        ka = np.broadcast_to(a[:, None], theta.shape).ravel()
        kb = np.broadcast_to(b[None, :], theta.shape).ravel()
        r1, r2 = reps(theta.ravel(), ka), reps(1.0 - theta.ravel(), kb)
        cost.append(r1 * rc[ka] + r2 * rc[kb])
        ca.append(f[ka])
        rA.append(r1)
        cb.append(f[kb])
        rB.append(r2)
    return tuple(np.concatenate(v) for v in (cost, ca, rA, cb, rB))  # type: ignore[return-value]


def _mix_costs(
    table: Any, share: np.ndarray, rounded: bool, fit: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per type the cheapest option of `_type_options` (inf when it has none) and
    the GPUs per GPU type (G,) the chosen options use together.

    `rounded=False`: fractional replicas, accuracy kept, availability and sharing
    ignored — a lower bound on any plan's rental for that type. `rounded=True`:
    dedicated whole replicas — a feasible *reference plan* when the GPUs it uses
    are available; `fit=True` builds it within availability (types with the most
    expensive cheapest option first, each taking its cheapest option that still
    fits; inf where none does)."""
    I, _ = table.feasible.shape
    G = len(table.scenario.gpus)
    out = np.full(I, np.inf)
    gpus = np.zeros(G)
    opts = [_type_options(table, i, float(share[i]), rounded) for i in range(I)]
    order = sorted(range(I), key=lambda i: -(opts[i][0].min(initial=np.inf)))
    gpr = table.gpus_per_replica
    for i in order if fit else range(I):
        cost, ca, ra, cb, rb = opts[i]
        if cost.size == 0:
            continue
        use = np.zeros((cost.size, G))
        np.add.at(use, (np.arange(cost.size), table.gpu[ca]), ra * gpr[ca])
        two = cb >= 0
        np.add.at(use, (np.flatnonzero(two), table.gpu[cb[two]]), rb[two] * gpr[cb[two]])
        ok = np.ones(cost.size, dtype=bool)
        if fit:
            ok = (gpus[None, :] + use <= table.gpu_available[None, :] + 1e-9).all(axis=1)
        if not ok.any():
            continue
        k = int(np.argmin(np.where(ok, cost, np.inf)))
        out[i] = float(cost[k])
        gpus += use[k]
    return out, gpus


def budget_binding_proof(doc: Document) -> bool:
    """True when the budget provably binds: the lower bound on the rental of
    serving every type in full (per type the LP's mix, fractional replicas,
    availability ignored) exceeds it."""

    s = parse_scenario(doc)
    if s.policy.budget is None:
        return False
    lb = _mix_costs(_table(s), np.ones(len(s.query_types)), rounded=False)[0]
    return bool(np.isfinite(lb).all() and float(lb.sum()) > s.policy.budget)


def certify(doc: Document) -> str | None:
    """What can be proven about a scenario without a solver:
    * "feasible" when a reference plan (per type, most expensive first, the
      cheapest candidate or two-candidate mix at its error bound that still fits
      the GPUs left, on dedicated whole replicas, serving the mandatory share
      1 − ζ_i) fits availability and budget;
    * "infeasible" when the mandatory shares need more GPUs than all GPU types
      hold together, or more rental than the budget (lower bounds, accuracy- and
      integrality-free for GPUs, accuracy-aware for money);
    * None otherwise (e.g. `scarce`, whose availability fits a *random* plan)."""

    s = parse_scenario(doc)
    table = _table(s)
    share = 1.0 - table.max_unmet
    gpus_lb, _ = _lower_bounds(table, share)
    money_lb, _ = _mix_costs(table, share, rounded=False)
    if gpus_lb > float(table.gpu_available.sum()) + 1e-9:
        return "infeasible"
    if s.policy.budget is not None and float(money_lb.sum()) > s.policy.budget + 1e-9:
        return "infeasible"
    cost, used = _mix_costs(table, share, rounded=True, fit=True)
    if not np.isfinite(cost).all() or (used > table.gpu_available + 1e-9).any():
        return None
    if s.policy.budget is not None and float(cost.sum()) > s.policy.budget + 1e-9:
        return None
    return "feasible"
