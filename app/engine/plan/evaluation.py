"""What the evaluator reports (`Evaluation`: cost breakdown, every constraint's
slack, violations, per-deployment and per-type service, stress) and the plan's JSON
document built from it. The checks themselves are in `app.engine.plan.evaluate`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from app.engine.plan.plan import Plan
from app.engine.plan.stress import StressReport

# Relative tolerance of every constraint check: solvers (CBC in particular) return
# values that satisfy constraints only up to their own tolerances.
TOL = 1e-6

# Constraint kinds that can *limit* a plan (coverage and unmet caps are equalities
# or bookkeeping and always sit at their bound): what "binding" reports.
BINDING_KINDS = ("capacity", "availability", "accuracy", "budget", "storage")


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
            self.rental + self.storage + self.unmet_penalty + self.delay_penalty + self.change_cost
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
        """Constraint instances of the `BINDING_KINDS` at (or within `rel` of) their
        bound: what limits the plan."""
        return [
            s
            for s in self.slacks
            if s.constraint in BINDING_KINDS and s.slack <= rel * max(1.0, abs(s.rhs))
        ]

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


def plan_document(plan: Plan, ev: Evaluation) -> dict[str, Any]:
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
