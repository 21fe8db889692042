"""The one evaluator (SPEC §1.4–1.5): cost and every constraint, recomputed from
scenario + plan. Every solver and every test asks it; no solver reports its own
feasibility.

`evaluate_plan` returns an `Evaluation`: the cost breakdown, the slack of each
constraint instance, the violations (empty when feasible), per-type service and
per-deployment utilization. With any of `delay_factor`, `error_factor`,
`demand_factor` != 1 it also reports a *stress* result: the plan, fixed, meets a
world that is slower, less accurate or busier than modelled.

Stress semantics (our choice; the paper does not define them precisely):
* latencies x delay_factor: each pair's B* and μ are recomputed against the SLOs
  with inflated latencies; a pair with no feasible batch any more violates the
  SLO for all its traffic;
* a deployment is run at full capacity under stress (headroom is there to be
  used): if its load exceeds r·μ', the excess share 1 − 1/L of its traffic
  misses the SLO;
* errors x error_factor: the type's traffic-weighted error is recomputed; the
  requests answered wrongly *beyond* its `max_error_rate` (served traffic x
  max(0, weighted error − bound)) count as accuracy-violating. (Counting every
  request of a type whose bound is exceeded would call a plan that sits exactly
  on its bound 100% violating at 1.01x — not a useful measure.)
* realised cost = rental + storage + change + planned unmet x penalty + every
  violating request x its type's unmet penalty + delay penalty at inflated delays.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from app.engine.plan.candidates import PairConstants, pair_constants
from app.engine.model.domain import Scenario
from app.engine.perf.model import DEFAULT_PROFILE, EngineProfile
from app.engine.plan.plan import Deployment, Plan

# Relative tolerance of every constraint check: solvers (CBC in particular) return
# values that satisfy constraints only up to their own tolerances.
TOL = 1e-6


@dataclass(frozen=True, slots=True)
class Violation:
    constraint: str  # coverage | unmet_cap | capacity | availability | accuracy | budget |
    # storage | slo | structure
    subject: str  # query type, deployment or GPU id ("" for fleet-wide)
    message: str
    amount: float  # by how much (in the constraint's own unit)


@dataclass(frozen=True, slots=True)
class Slack:
    constraint: str
    subject: str
    lhs: float
    rhs: float

    @property
    def slack(self) -> float:
        return self.rhs - self.lhs


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    rental: float = 0.0
    storage: float = 0.0
    unmet_penalty: float = 0.0
    delay_penalty: float = 0.0
    change_cost: float = 0.0

    @property
    def total(self) -> float:
        return (
            self.rental
            + self.storage
            + self.unmet_penalty
            + self.delay_penalty
            + (self.change_cost)
        )

    def to_document(self) -> dict[str, float]:
        d = asdict(self)
        d["total"] = self.total
        return d


@dataclass(frozen=True, slots=True)
class DeploymentReport:
    id: str
    utilization: float  # load / replicas (capacity constraint: <= max_utilization)
    load: float  # replicas' worth of capacity in use


@dataclass(frozen=True, slots=True)
class TypeReport:
    query_type: str
    demand_rps: float
    served_fraction: float
    unmet_fraction: float
    error_rate: float | None  # traffic-weighted over served traffic
    max_error_rate: float
    mean_delay_s: float | None  # traffic-weighted TTFT + output·TPOT at B*


@dataclass(frozen=True, slots=True)
class StressReport:
    delay_factor: float
    error_factor: float
    demand_factor: float
    demand_rps: float
    slo_violating_rps: float
    accuracy_violating_rps: float
    unmet_rps: float
    realised_cost: float

    @property
    def slo_violation_share(self) -> float:
        return self.slo_violating_rps / self.demand_rps if self.demand_rps > 0 else 0.0

    @property
    def accuracy_violation_share(self) -> float:
        return self.accuracy_violating_rps / self.demand_rps if self.demand_rps > 0 else 0.0

    @property
    def violation_share(self) -> float:
        """Share of demand served outside its SLO or accuracy bound (a request that
        misses both counts once, up to the served total)."""
        if self.demand_rps <= 0:
            return 0.0
        served = self.demand_rps - self.unmet_rps
        bad = min(served, self.slo_violating_rps + self.accuracy_violating_rps)
        return bad / self.demand_rps

    def to_document(self) -> dict[str, float]:
        d = asdict(self)
        d["slo_violation_share"] = self.slo_violation_share
        d["accuracy_violation_share"] = self.accuracy_violation_share
        d["violation_share"] = self.violation_share
        return d


@dataclass(frozen=True)
class Evaluation:
    cost: CostBreakdown
    violations: tuple[Violation, ...]
    slacks: tuple[Slack, ...]
    deployments: tuple[DeploymentReport, ...]
    types: tuple[TypeReport, ...]
    stress: StressReport | None = None
    total_gpus: int = 0
    gpus_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def objective(self) -> float:
        return self.cost.total

    def binding(self, rel: float = 1e-3) -> list[Slack]:
        """Constraint instances at (or within `rel` of) their bound."""
        return [s for s in self.slacks if s.slack <= rel * max(1.0, abs(s.rhs))]

    def to_document(self) -> dict[str, Any]:
        return {
            "feasible": self.feasible,
            "objective": self.objective,
            "cost": self.cost.to_document(),
            "violations": [asdict(v) for v in self.violations],
            "constraints": [{**asdict(s), "slack": s.slack} for s in self.slacks],
            "deployments": [asdict(d) for d in self.deployments],
            "query_types": [asdict(t) for t in self.types],
            "total_gpus": self.total_gpus,
            "gpus_by_type": dict(self.gpus_by_type),
            "stress": self.stress.to_document() if self.stress else None,
        }


def _le(lhs: float, rhs: float) -> bool:
    return lhs <= rhs + TOL * max(1.0, abs(rhs))


def change_cost(scenario: Scenario, plan: Plan, current: Plan | None) -> float:
    """$ for GPUs started or stopped per deployment relative to the live plan."""
    if current is None or scenario.policy.change_cost_per_gpu <= 0:
        return 0.0
    now = {d.id: d for d in plan.deployments}
    before = {d.id: d for d in current.deployments}
    gpus = 0
    for did in now.keys() | before.keys():
        a, b = now.get(did), before.get(did)
        per = (a or b).tp * (a or b).pp  # type: ignore[union-attr]
        gpus += per * abs((a.replicas if a else 0) - (b.replicas if b else 0))
    return scenario.policy.change_cost_per_gpu * gpus


def _structure_violations(scenario: Scenario, plan: Plan) -> list[Violation]:
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
        if d.tp not in pol.tp_options:
            problems.append(f"tp={d.tp} not in tp_options")
        if d.pp not in pol.pp_options:
            problems.append(f"pp={d.pp} not in pp_options")
        if not problems:
            g = scenario.gpus[gpus[d.gpu]]
            p = scenario.precisions[precs[d.precision]]
            if d.tp > g.gpus_per_node:
                problems.append(f"tp={d.tp} exceeds gpus_per_node={g.gpus_per_node}")
            if not p.supported_on(g):
                problems.append(f"precision {p.id!r} unsupported on {g.id!r}")
        for msg in problems:
            out.append(Violation("structure", d.id, msg, 1.0))
    for r in plan.routing:
        if r.query_type not in types:
            out.append(
                Violation("structure", r.query_type, "routing names an unknown query type", 1.0)
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
    for q in plan.unmet:
        if q not in types:
            out.append(Violation("structure", q, "unmet names an unknown query type", 1.0))
    return out


def _constants_for(
    scenario: Scenario,
    deps: list[Deployment],
    profile: EngineProfile,
    delay_factor: float = 1.0,
    error_factor: float = 1.0,
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
    )


def evaluate_plan(
    scenario: Scenario,
    plan: Plan,
    current: Plan | None = None,
    profile: EngineProfile = DEFAULT_PROFILE,
    delay_factor: float = 1.0,
    error_factor: float = 1.0,
    demand_factor: float = 1.0,
) -> Evaluation:
    """Check a plan against every constraint and price it (SPEC §1.4–1.5)."""
    s, pol = scenario, scenario.policy
    violations = _structure_violations(s, plan)
    slacks: list[Slack] = []
    qidx = s.qt_index()
    I = len(s.query_types)
    broken = {v.subject for v in violations if v.constraint == "structure"}
    deps = [d for d in plan.deployments if d.id not in broken]
    didx = {d.id: k for k, d in enumerate(deps)}
    K = len(deps)

    x = np.zeros((I, K))
    for r in plan.routing:
        if r.query_type in qidx and r.deployment in didx:
            x[qidx[r.query_type], didx[r.deployment]] += r.fraction
    u = np.array([plan.unmet.get(q.id, 0.0) for q in s.query_types])
    lam = np.array([q.arrival_rate for q in s.query_types])
    reps = np.array([d.replicas for d in deps], dtype=np.float64)

    pc = _constants_for(s, deps, profile) if K else None
    # Routed traffic that a broken deployment would have carried is simply lost.
    lost = np.zeros(I)
    for r in plan.routing:
        if r.query_type in qidx and r.deployment not in didx:
            lost[qidx[r.query_type]] += r.fraction

    # 1. coverage and unmet cap
    for i, q in enumerate(s.query_types):
        total = x[i].sum() + u[i] + lost[i]
        slacks.append(Slack("coverage", q.id, total, 1.0))
        if abs(total - 1.0) > TOL * 10:
            violations.append(
                Violation(
                    "coverage",
                    q.id,
                    f"routed + unmet fractions sum to {total:.6f}, not 1",
                    total - 1.0,
                )
            )
        slacks.append(Slack("unmet_cap", q.id, u[i], q.max_unmet_fraction))
        if not _le(u[i], q.max_unmet_fraction):
            violations.append(
                Violation(
                    "unmet_cap",
                    q.id,
                    f"unmet fraction {u[i]:.4f} exceeds max_unmet_fraction {q.max_unmet_fraction}",
                    u[i] - q.max_unmet_fraction,
                )
            )

    # SLO / memory / quality: traffic only on feasible pairs
    if pc is not None:
        feas = pc.feasible
        for i, q in enumerate(s.query_types):
            for k, d in enumerate(deps):
                if x[i, k] > TOL and not feas[i, k]:
                    why = (
                        "weights do not fit"
                        if not pc.fits[k]
                        else "model has no error rate for this type"
                        if not np.isfinite(pc.error[i, k])
                        else "no batch size meets TTFT/TPOT/e2e and KV limits"
                    )
                    violations.append(
                        Violation(
                            "slo",
                            f"{q.id}->{d.id}",
                            f"routes {x[i, k]:.4f} of {q.id!r} to {d.id}: {why}",
                            x[i, k],
                        )
                    )

    # 2. capacity per deployment
    dep_reports: list[DeploymentReport] = []
    if pc is not None:
        # Traffic on SLO-infeasible pairs (μ = 0) is reported as an slo violation
        # above; it adds no (infinite) load here.
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.where((x > 0) & (pc.mu > 0), lam[:, None] * x / pc.mu, 0.0)
        load = need.sum(axis=0)
        for k, d in enumerate(deps):
            cap = pol.max_utilization * reps[k]
            slacks.append(Slack("capacity", d.id, float(load[k]), cap))
            if not _le(load[k], cap):
                violations.append(
                    Violation(
                        "capacity",
                        d.id,
                        f"load {load[k]:.3f} replica-equivalents exceeds "
                        f"max_utilization x replicas = {cap:.3f}",
                        float(load[k] - cap),
                    )
                )
            util = float(load[k] / reps[k]) if reps[k] > 0 else (math.inf if load[k] > 0 else 0.0)
            dep_reports.append(DeploymentReport(d.id, util, float(load[k])))

    # 3. availability per GPU type
    gpus_by_type: dict[str, int] = {}
    for d in deps:
        gpus_by_type[d.gpu] = gpus_by_type.get(d.gpu, 0) + d.gpus
    for g in s.gpus:
        used = gpus_by_type.get(g.id, 0)
        slacks.append(Slack("availability", g.id, used, g.available))
        if used > g.available:
            violations.append(
                Violation(
                    "availability",
                    g.id,
                    f"plan uses {used} GPUs, {g.available} available",
                    used - g.available,
                )
            )

    # 4. accuracy: traffic-weighted error of served requests
    type_reports: list[TypeReport] = []
    for i, q in enumerate(s.query_types):
        served = x[i].sum()
        err_mass = (
            float((np.nan_to_num(pc.error[i], posinf=1.0) * x[i]).sum()) if pc is not None else 0.0
        )
        bound = q.max_error_rate * (1.0 - u[i] - lost[i])
        slacks.append(Slack("accuracy", q.id, err_mass, bound))
        if not _le(err_mass, bound):
            violations.append(
                Violation(
                    "accuracy",
                    q.id,
                    f"traffic-weighted error {err_mass / max(served, 1e-12):.4f} exceeds "
                    f"max_error_rate {q.max_error_rate}",
                    err_mass - bound,
                )
            )
        delay = (
            float((pc.delay[i] * x[i]).sum() / served) if pc is not None and served > 0 else None
        )
        type_reports.append(
            TypeReport(
                q.id,
                q.arrival_rate,
                float(served),
                float(u[i] + lost[i]),
                err_mass / served if served > 0 else None,
                q.max_error_rate,
                delay,
            )
        )

    # cost
    price = {g.id: g.price_per_hour for g in s.gpus}
    model_at, prec_at = s.model_index(), s.precision_index()
    rental = pol.horizon_h * sum(price[d.gpu] * d.gpus for d in deps)
    weight_gb = [
        s.models[model_at[d.model]].params_b
        * s.precisions[prec_at[d.precision]].bytes_per_weight
        for d in deps
    ]
    storage_gb = float(sum(weight_gb))
    storage = pol.storage_price_per_gb_h * pol.horizon_h * storage_gb
    unmet_pen = (
        3600.0
        * pol.horizon_h
        * float(
            sum(
                q.unmet_penalty * q.arrival_rate * (u[i] + lost[i])
                for i, q in enumerate(s.query_types)
            )
        )
    )
    rho = np.array([q.delay_penalty or 0.0 for q in s.query_types])
    delay_pen = (
        3600.0 * pol.horizon_h * float(((rho * lam)[:, None] * pc.delay * x).sum())
        if pc is not None
        else 0.0
    )
    cost = CostBreakdown(rental, storage, unmet_pen, delay_pen, change_cost(s, plan, current))

    # 5. budget, 6. storage
    if pol.budget is not None:
        slacks.append(Slack("budget", "", rental + storage, pol.budget))
        if not _le(rental + storage, pol.budget):
            violations.append(
                Violation(
                    "budget",
                    "",
                    f"rental + storage ${rental + storage:.2f} exceeds budget ${pol.budget:.2f}",
                    rental + storage - pol.budget,
                )
            )
    if pol.storage_capacity_gb is not None:
        slacks.append(Slack("storage", "", storage_gb, pol.storage_capacity_gb))
        if not _le(storage_gb, pol.storage_capacity_gb):
            violations.append(
                Violation(
                    "storage",
                    "",
                    f"weights {storage_gb:.1f} GB exceed storage capacity "
                    f"{pol.storage_capacity_gb:.1f} GB",
                    storage_gb - pol.storage_capacity_gb,
                )
            )

    stress = None
    if (delay_factor, error_factor, demand_factor) != (1.0, 1.0, 1.0):
        stress = _stress(
            s, deps, x, u + lost, reps, cost, profile, delay_factor, error_factor, demand_factor
        )

    return Evaluation(
        cost=cost,
        violations=tuple(violations),
        slacks=tuple(slacks),
        deployments=tuple(dep_reports),
        types=tuple(type_reports),
        stress=stress,
        total_gpus=int(sum(d.gpus for d in deps)),
        gpus_by_type=gpus_by_type,
    )


def _stress(
    s: Scenario,
    deps: list[Deployment],
    x: np.ndarray,
    unmet: np.ndarray,
    reps: np.ndarray,
    cost: CostBreakdown,
    profile: EngineProfile,
    delay_factor: float,
    error_factor: float,
    demand_factor: float,
) -> StressReport:
    lam = np.array([q.arrival_rate for q in s.query_types]) * demand_factor
    phi = np.array([q.unmet_penalty for q in s.query_types])
    eps = np.array([q.max_error_rate for q in s.query_types])
    rho = np.array([q.delay_penalty or 0.0 for q in s.query_types])
    hours = s.policy.horizon_h
    traffic = lam[:, None] * x  # req/s of type i on deployment k
    slo_bad = np.zeros_like(traffic)
    acc_bad = np.zeros_like(traffic)
    delay_pen = 0.0
    if deps:
        pc = _constants_for(s, deps, profile, delay_factor, error_factor)
        ok = pc.feasible
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.where(ok & (traffic > 0), traffic / pc.mu, 0.0)
        load = need.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            overload = np.where(load > reps, 1.0 - reps / load, 0.0)
        slo_bad = np.where(ok, traffic * overload[None, :], traffic)
        served = traffic.sum(axis=1)
        err = np.where(np.isfinite(pc.error), pc.error, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_err = np.where(served > 0, (err * traffic).sum(axis=1) / served, 0.0)
        excess = np.maximum(0.0, mean_err - eps) * served
        # spread over the type's deployments in proportion to traffic (per-type totals
        # are what is reported)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc_bad = (
                np.where(served[:, None] > 0, traffic / served[:, None], 0.0) * excess[:, None]
            )
        delay_pen = (
            3600.0 * hours * float((rho[:, None] * traffic * np.where(ok, pc.delay, 0)).sum())
        )
    unmet_rps = float((lam * unmet).sum())
    slo_v, acc_v = float(slo_bad.sum()), float(acc_bad.sum())
    bad_per_type = np.minimum(slo_bad.sum(axis=1) + acc_bad.sum(axis=1), traffic.sum(axis=1))
    penalties = 3600.0 * hours * float((phi * (lam * unmet + bad_per_type)).sum())
    realised = cost.rental + cost.storage + cost.change_cost + penalties + delay_pen
    return StressReport(
        delay_factor,
        error_factor,
        demand_factor,
        float(lam.sum()),
        slo_v,
        acc_v,
        unmet_rps,
        realised,
    )


def plan_document(scenario: Scenario, plan: Plan, ev: Evaluation) -> dict[str, Any]:
    """The plan's JSON form (issue #2 §5): decisions plus what the evaluator derived."""
    util = {d.id: d.utilization for d in ev.deployments}
    return {
        "deployments": [
            {
                "id": d.id,
                "model": d.model,
                "gpu": d.gpu,
                "precision": d.precision,
                "tp": d.tp,
                "pp": d.pp,
                "replicas": d.replicas,
                "gpus": d.gpus,
                "utilization": _finite(util.get(d.id, 0.0)),
            }
            for d in plan.deployments
        ],
        "routing": [
            {"query_type": r.query_type, "deployment": r.deployment, "fraction": r.fraction}
            for r in plan.routing
        ],
        "unmet": [{"query_type": q, "fraction": f} for q, f in plan.unmet.items()],
        "cost": ev.cost.to_document(),
        "feasible": ev.feasible,
        "violations": [asdict(v) for v in ev.violations],
    }


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None
