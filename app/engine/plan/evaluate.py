"""The one evaluator (SPEC §1.4–1.5): cost and every constraint, recomputed from
scenario + plan. Every solver and every test asks it; no solver reports its own
feasibility.

`evaluate_plan` returns an `Evaluation`: the cost breakdown, the slack of each
constraint instance, the violations (empty when feasible), per-type service and
per-deployment utilization. Each constraint family is checked by a function of
its own (`_coverage`, `_slo`, `_capacity`, `_availability`, `_accuracy`,
`_budget`, `_storage`, after `_structure`); prices come from
`app.engine.plan.costs`. With any of `delay_factor`, `error_factor`,
`demand_factor` != 1 it also reports a *stress* result (`app.engine.plan.stress`).

Unserved demand is what no valid route carries: the plan's unmet fractions, the
traffic routed to deployments that cannot exist, and any share the plan forgot
(a coverage violation). All of it is priced at the type's unmet penalty and
reported as the type's unmet fraction, so a plan can never look cheap, or a
dashboard calm, by dropping a type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from app.engine.model.domain import Scenario
from app.engine.perf.calibration import Calibration
from app.engine.perf.profiles import EngineProfile
from app.engine.plan import costs
from app.engine.plan.candidates import PairConstants, pair_constants
from app.engine.plan.evaluation import (
    TOL,
    CostBreakdown,
    DeploymentReport,
    Evaluation,
    Slack,
    TypeReport,
    Violation,
)
from app.engine.plan.plan import Deployment, Plan
from app.engine.plan.stress import stress_report

FloatArray = NDArray[np.float64]


def _le(lhs: float, rhs: float) -> bool:
    return lhs <= rhs + TOL * max(1.0, abs(rhs))


@dataclass(slots=True)
class _Checks:
    """What the constraint checks accumulate."""

    violations: list[Violation] = field(default_factory=list)
    slacks: list[Slack] = field(default_factory=list)

    def bound(self, constraint: str, subject: str, lhs: float, rhs: float, message: str) -> None:
        """Record `lhs <= rhs`; a violation with `message` when it does not hold."""
        self.slacks.append(Slack(constraint, subject, lhs, rhs))
        if not _le(lhs, rhs):
            self.violations.append(Violation(constraint, subject, message, lhs - rhs))


@dataclass(frozen=True, slots=True)
class _Decisions:
    """A plan's decisions as arrays over the scenario: K valid deployments."""

    deps: list[Deployment]
    x: FloatArray  # (I, K) routed fractions
    u: FloatArray  # (I,) unmet fractions as the plan states them
    lost: FloatArray  # (I,) routed to deployments that cannot exist
    reps: FloatArray  # (K,)
    pc: PairConstants | None  # None when K = 0

    @property
    def served(self) -> FloatArray:
        return np.asarray(self.x.sum(axis=1), dtype=np.float64)

    @property
    def unserved(self) -> FloatArray:
        """(I,) share no valid route carries: stated unmet, lost, or forgotten."""
        stated = self.u + self.lost
        return np.clip(np.maximum(stated, 1.0 - self.served), 0.0, 1.0)


def _structure(scenario: Scenario, plan: Plan) -> list[Violation]:
    """Deployments that cannot exist (unknown ids, TP/PP outside the options, TP
    beyond a node or not sharding the model's heads, precision unsupported) and
    routes or unmet entries naming nothing."""
    out: list[Violation] = []
    models, gpus = scenario.model_index(), scenario.gpu_index()
    precs, types = scenario.precision_index(), scenario.qt_index()
    pol = scenario.policy
    deps = plan.deployment_map()
    for d in plan.deployments:
        problems = []
        if d.model not in models:
            problems.append(f"unknown model {d.model!r}")
        if d.gpu not in gpus:
            problems.append(f"unknown gpu {d.gpu!r}")
        if d.precision not in precs:
            problems.append(f"unknown precision {d.precision!r}")
        problems += pol.parallelism_problems(d.tp, d.pp)
        if not problems:
            g = scenario.gpus[gpus[d.gpu]]
            p = scenario.precisions[precs[d.precision]]
            if d.tp > g.gpus_per_node:
                problems.append(f"tp={d.tp} exceeds gpus_per_node={g.gpus_per_node}")
            if (problem := scenario.models[models[d.model]].tp_problem(d.tp)) is not None:
                problems.append(problem)
            if not p.supported_on(g):
                problems.append(f"precision {p.id!r} unsupported on {g.id!r}")
        out.extend(Violation("structure", d.id, msg, 1.0) for msg in problems)
    for r in plan.routing:
        if r.query_type not in types:
            out.append(
                Violation(
                    "structure",
                    r.query_type,
                    f"routing names an unknown query type {r.query_type!r}",
                    1.0,
                )
            )
        if r.deployment not in deps:
            out.append(
                Violation(
                    "structure",
                    r.deployment,
                    f"routing of {r.query_type!r} names a deployment not in the plan",
                    r.fraction,
                )
            )
    out.extend(
        Violation("structure", q, "unmet names an unknown query type", 1.0)
        for q in plan.unmet
        if q not in types
    )
    return out


def _constants_for(
    scenario: Scenario,
    deps: list[Deployment],
    profile: EngineProfile | None,
    delay_factor: float = 1.0,
    error_factor: float = 1.0,
    calibration: Calibration | None = None,
) -> PairConstants:
    mi, gi, pi = scenario.model_index(), scenario.gpu_index(), scenario.precision_index()
    return pair_constants(
        scenario,
        np.array([mi[d.model] for d in deps], dtype=np.int64),
        np.array([gi[d.gpu] for d in deps], dtype=np.int64),
        np.array([pi[d.precision] for d in deps], dtype=np.int64),
        np.array([d.tp for d in deps], dtype=np.int64),
        np.array([d.pp for d in deps], dtype=np.int64),
        profile,
        delay_factor=delay_factor,
        error_factor=error_factor,
        calibration=calibration,
    )


def _decisions(
    scenario: Scenario,
    plan: Plan,
    broken: set[str],
    profile: EngineProfile | None,
    calibration: Calibration | None,
) -> _Decisions:
    qidx = scenario.qt_index()
    deps = [d for d in plan.deployments if d.id not in broken]
    didx = {d.id: k for k, d in enumerate(deps)}
    I = len(scenario.query_types)
    x = np.zeros((I, len(deps)))
    lost = np.zeros(I)
    for r in plan.routing:
        if r.query_type not in qidx:
            continue
        if r.deployment in didx:
            x[qidx[r.query_type], didx[r.deployment]] += r.fraction
        else:  # traffic a broken (or absent) deployment would have carried
            lost[qidx[r.query_type]] += r.fraction
    u = np.array([plan.unmet.get(q.id, 0.0) for q in scenario.query_types])
    reps = np.array([d.replicas for d in deps], dtype=np.float64)
    pc = _constants_for(scenario, deps, profile, calibration=calibration) if deps else None
    return _Decisions(deps, x, u, lost, reps, pc)


def _coverage(scenario: Scenario, dec: _Decisions, out: _Checks) -> None:
    """1. routed + unmet = 1 per type, and the unmet cap."""
    for i, q in enumerate(scenario.query_types):
        total = float(dec.x[i].sum() + dec.u[i] + dec.lost[i])
        out.slacks.append(Slack("coverage", q.id, total, 1.0))
        if abs(total - 1.0) > TOL * 10:
            out.violations.append(
                Violation(
                    "coverage",
                    q.id,
                    f"{q.id!r}: routed + unmet fractions sum to {total:.6f}, not 1 "
                    f"({1.0 - total:.6f} of its demand is neither served nor declared unmet)"
                    if total < 1.0
                    else f"{q.id!r}: routed + unmet fractions sum to {total:.6f}, not 1",
                    total - 1.0,
                )
            )
        unserved = float(dec.unserved[i])
        out.bound(
            "unmet_cap",
            q.id,
            unserved,
            q.max_unmet_fraction,
            f"{q.id!r}: unmet fraction {unserved:.4f} exceeds max_unmet_fraction "
            f"{q.max_unmet_fraction}",
        )


def _slo(scenario: Scenario, dec: _Decisions, out: _Checks) -> None:
    """SLO / memory / quality: traffic only on feasible (type, deployment) pairs."""
    pc = dec.pc
    if pc is None:
        return
    feas = pc.feasible
    for i, q in enumerate(scenario.query_types):
        for k, d in enumerate(dec.deps):
            if dec.x[i, k] > TOL and not feas[i, k]:
                why = (
                    "weights do not fit"
                    if not pc.fits[k]
                    else "model has no error rate for this type"
                    if not np.isfinite(pc.error[i, k])
                    else "no batch size meets TTFT/TPOT/e2e and KV limits"
                )
                out.violations.append(
                    Violation(
                        "slo",
                        f"{q.id}->{d.id}",
                        f"routes {dec.x[i, k]:.4f} of {q.id!r} to {d.id}: {why}",
                        float(dec.x[i, k]),
                    )
                )


def _capacity(scenario: Scenario, dec: _Decisions, out: _Checks) -> list[DeploymentReport]:
    """2. load (replica-equivalents) <= max_utilization x replicas per deployment.
    Traffic on SLO-infeasible pairs (μ = 0) is an slo violation, not infinite load."""
    pc = dec.pc
    if pc is None:
        return []
    lam = costs.demand(scenario)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where((dec.x > 0) & (pc.mu > 0), lam[:, None] * dec.x / pc.mu, 0.0)
    load = need.sum(axis=0)
    reports = []
    for k, d in enumerate(dec.deps):
        cap = scenario.policy.max_utilization * dec.reps[k]
        out.bound(
            "capacity",
            d.id,
            float(load[k]),
            float(cap),
            f"load {load[k]:.3f} replica-equivalents exceeds max_utilization x replicas "
            f"= {cap:.3f}",
        )
        util = (
            float(load[k] / dec.reps[k]) if dec.reps[k] > 0 else (math.inf if load[k] > 0 else 0.0)
        )
        reports.append(DeploymentReport(d.id, util, float(load[k])))
    return reports


def _availability(scenario: Scenario, dec: _Decisions, out: _Checks) -> dict[str, int]:
    """3. GPUs used per type <= available."""
    used: dict[str, int] = {}
    for d in dec.deps:
        used[d.gpu] = used.get(d.gpu, 0) + d.gpus
    for g in scenario.gpus:
        n = used.get(g.id, 0)
        out.bound(
            "availability", g.id, n, g.available, f"plan uses {n} GPUs, {g.available} available"
        )
    return used


def _accuracy(scenario: Scenario, dec: _Decisions, out: _Checks) -> list[TypeReport]:
    """4. traffic-weighted error of served requests <= max_error_rate; and each
    type's service report."""
    pc = dec.pc
    served, unserved = dec.served, dec.unserved
    reports = []
    for i, q in enumerate(scenario.query_types):
        err_mass = (
            float((np.nan_to_num(pc.error[i], posinf=1.0) * dec.x[i]).sum())
            if pc is not None
            else 0.0
        )
        out.bound(
            "accuracy",
            q.id,
            err_mass,
            q.max_error_rate * float(served[i]),
            f"{q.id!r}: traffic-weighted error {err_mass / max(float(served[i]), 1e-12):.4f} "
            f"exceeds max_error_rate {q.max_error_rate}",
        )
        delay = (
            float((pc.delay[i] * dec.x[i]).sum() / served[i])
            if pc is not None and served[i] > 0
            else None
        )
        reports.append(
            TypeReport(
                q.id,
                q.arrival_rate,
                float(served[i]),
                float(unserved[i]),
                err_mass / float(served[i]) if served[i] > 0 else None,
                q.max_error_rate,
                delay,
            )
        )
    return reports


def _price(
    scenario: Scenario, dec: _Decisions, plan: Plan, current: Plan | None
) -> tuple[CostBreakdown, float]:
    """The §1.5 objective's parts, and the GB of weights the plan stores."""
    deps = dec.deps
    gi, mi, pi = scenario.gpu_index(), scenario.model_index(), scenario.precision_index()
    rental = float(
        costs.replica_cost(scenario, [gi[d.gpu] for d in deps], [d.tp * d.pp for d in deps]).dot(
            dec.reps
        )
    )
    weights = costs.weight_gb(
        scenario, [mi[d.model] for d in deps], [pi[d.precision] for d in deps]
    )
    storage = float(costs.storage_cost(scenario, weights).sum())
    unmet = float(costs.unmet_cost(scenario).dot(dec.unserved))
    delay = (
        float((costs.delay_cost(scenario, dec.pc.delay) * dec.x).sum())
        if dec.pc is not None
        else 0.0
    )
    cost = CostBreakdown(rental, storage, unmet, delay, costs.change_cost(scenario, plan, current))
    return cost, float(weights.sum())


def _budget(scenario: Scenario, cost: CostBreakdown, out: _Checks) -> None:
    """5. rental + storage over the horizon <= budget (if set)."""
    budget = scenario.policy.budget
    if budget is None:
        return
    spend = cost.rental + cost.storage
    out.bound(
        "budget", "", spend, budget, f"rental + storage ${spend:.2f} exceeds budget ${budget:.2f}"
    )


def _storage(scenario: Scenario, storage_gb: float, out: _Checks) -> None:
    """6. weights of active deployments <= storage capacity (if set)."""
    cap = scenario.policy.storage_capacity_gb
    if cap is None:
        return
    out.bound(
        "storage",
        "",
        storage_gb,
        cap,
        f"weights {storage_gb:.1f} GB exceed storage capacity {cap:.1f} GB",
    )


def evaluate_plan(
    scenario: Scenario,
    plan: Plan,
    current: Plan | None = None,
    profile: EngineProfile | None = None,
    delay_factor: float = 1.0,
    error_factor: float = 1.0,
    demand_factor: float = 1.0,
    calibration: Calibration | None = None,
) -> Evaluation:
    """Check a plan against every constraint and price it (SPEC §1.4–1.5), with the
    latencies of each GPU's engine (`profile` overrides them all, for benchmarks)
    corrected by `calibration` when given."""
    out = _Checks(_structure(scenario, plan))
    broken = {v.subject for v in out.violations}
    dec = _decisions(scenario, plan, broken, profile, calibration)
    _coverage(scenario, dec, out)
    _slo(scenario, dec, out)
    dep_reports = _capacity(scenario, dec, out)
    gpus_by_type = _availability(scenario, dec, out)
    type_reports = _accuracy(scenario, dec, out)
    cost, storage_gb = _price(scenario, dec, plan, current)
    _budget(scenario, cost, out)
    _storage(scenario, storage_gb, out)
    stress = None
    if (delay_factor, error_factor, demand_factor) != (1.0, 1.0, 1.0):
        pc = (
            _constants_for(scenario, dec.deps, profile, delay_factor, error_factor, calibration)
            if dec.deps
            else None
        )
        stress = stress_report(
            scenario,
            pc,
            dec.x,
            dec.unserved,
            dec.reps,
            cost,
            delay_factor,
            error_factor,
            demand_factor,
        )
    return Evaluation(
        cost=cost,
        violations=tuple(out.violations),
        slacks=tuple(out.slacks),
        deployments=tuple(dep_reports),
        types=tuple(type_reports),
        stress=stress,
        total_gpus=int(sum(d.gpus for d in dec.deps)),
        gpus_by_type=gpus_by_type,
    )
