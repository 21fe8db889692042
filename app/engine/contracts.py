"""The typed contracts that cross the engine's facade (`app.engine.api`): what a
caller asks for (`SolveRequest`, `EvaluateRequest`, `AuditRequest`) and what it
gets back (`SolveResult`, `Evaluation`, `AuditResult`, `PlanAnalysis`).

`SolverOptions` is the one schema of solver options: the REST API's what-if and
audit bodies, the CLI's flags and the solver processes all validate through it,
so their names, defaults and bounds cannot drift.

Everything here is frozen and picklable (it crosses the service's process
boundary as is); documents (`to_document`) are the JSON forms.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.engine.model.domain import Scenario
from app.engine.plan.evaluation import Evaluation, Slack, TypeReport, plan_document
from app.engine.plan.plan import Plan

Algorithm = Literal["gh", "agh", "milp"]
Backend = Literal["cbc", "highs"]
# Why a solve stopped. gh: "completed"; agh: "converged" (its bound proves the plan
# optimal, or its neighbourhood is exhausted), "completed" (its start limit ended
# the search: the deterministic mode), "deadline" (the budget ran out), "stopped"
# (a newer request stopped it); milp: the MILP terminations.
Termination = Literal[
    "completed",
    "converged",
    "deadline",
    "stopped",
    "optimal",
    "time_limit",
    "infeasible",
    "unbounded",
    "cancelled",
    "error",
]
# What a solve returned: a proven optimum, a plan that passes the evaluator, a plan
# that breaks constraints (demand beyond its caps, say: the best there is), or none.
SolutionStatus = Literal["optimal", "feasible", "infeasible", "none"]

ALGORITHMS: tuple[Algorithm, ...] = ("gh", "agh", "milp")
BACKENDS: tuple[Backend, ...] = ("cbc", "highs")


class ExactOptions(BaseModel):
    """Options of the exact MILP (audits, `algorithm: milp`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    relative_gap: float = Field(
        default=1e-4, ge=0.0, le=1.0, description="MILP: stop at this relative gap"
    )
    threads: int = Field(default=1, ge=1, le=64, description="MILP solver threads")
    backend: Backend = Field(
        default="highs",
        description="MILP solver: highs (the default: it proves faster, see "
        "bench/results/compare.md) or cbc",
    )


class SolverOptions(ExactOptions):
    """How to plan: the algorithm, its time budget, its seed."""

    algorithm: Algorithm = Field(default="agh", description="gh, agh or milp")
    time_budget_s: float = Field(
        default=1.0,
        gt=0.0,
        le=86_400.0,
        description="AGH's anytime budget, or the MILP's wall-clock limit, seconds",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="AGH's random seed")
    max_starts: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="AGH: stop after this many starts (a deterministic mode: same "
        "seed and limit, same plan, whatever the machine's speed)",
    )


@dataclass(frozen=True, slots=True)
class SolveRequest:
    """Plan for `scenario`. `current` is the live plan: AGH warm-starts from it and
    every algorithm prices the change cost against it."""

    scenario: Scenario
    options: SolverOptions = SolverOptions()
    current: Plan | None = None


@dataclass(frozen=True, slots=True)
class ExactInfo:
    """What the MILP solver said, beyond the plan (algorithm `milp`)."""

    solver: str
    solver_version: str
    solver_objective: float | None
    relative_gap_target: float
    threads: int
    build_s: float
    solve_s: float
    variables: int
    constraints: int
    message: str


@dataclass(frozen=True, slots=True)
class SolveResult:
    """A plan and everything known about it. `objective` is the evaluator's cost
    (never a solver's own figure); `bound` is the best proven lower bound known
    (None when none is), `gap` = (objective − bound) / objective."""

    algorithm: Algorithm
    termination: Termination
    status: SolutionStatus
    plan: Plan
    evaluation: Evaluation
    bound: float | None
    gap: float | None
    wall_s: float
    time_to_best_s: float
    iterations: int
    starts: int
    warm_start_used: bool
    seed: int
    time_budget_s: float
    candidates: int
    exact: ExactInfo | None = None
    # Where `bound` comes from: "milp" (a full MILP's dual bound), "lp" (the full
    # LP relaxation's optimum) or None (no bound known). Never a restricted MILP.
    bound_source: str | None = None

    @property
    def objective(self) -> float:
        return self.evaluation.objective

    def solver_info(self) -> dict[str, Any]:
        """The solver's account of itself (what the service's `solver` shows)."""
        return {
            "algorithm": self.algorithm,
            "termination": self.termination,
            "status": self.status,
            "objective": self.objective,
            "bound": json_number(self.bound),
            "bound_source": self.bound_source,
            "gap": json_number(self.gap),
            "wall_s": self.wall_s,
            "time_to_best_s": self.time_to_best_s,
            "iterations": self.iterations,
            "starts": self.starts,
            "warm_start_used": self.warm_start_used,
            "seed": self.seed,
            "time_budget_s": self.time_budget_s,
            "candidates": self.candidates,
        }

    def to_document(self) -> dict[str, Any]:
        doc = {**self.solver_info(), "plan": plan_document(self.plan, self.evaluation)}
        if self.exact is not None:
            doc["milp"] = {k: json_number(v) for k, v in asdict(self.exact).items()}
        return doc


def status_of(evaluation: Evaluation, proven_optimal: bool = False) -> SolutionStatus:
    if not evaluation.feasible:
        return "infeasible"
    return "optimal" if proven_optimal else "feasible"


def relative_gap(cost: float, bound: float) -> float:
    """(cost − bound) / |cost|, 0 when both are ~0, never negative."""
    if abs(cost) < 1e-9:
        return 0.0 if bound >= cost - 1e-9 else math.inf
    return max(0.0, (cost - bound) / abs(cost))


def json_number(v: Any) -> Any:
    """NaN and infinities are not JSON: None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass(frozen=True, slots=True)
class PlanAnalysis:
    """What the evaluator says about a plan beyond its document: the constraints
    that bind, how each query type is served, GPUs in use."""

    binding_constraints: tuple[Slack, ...]
    query_types: tuple[TypeReport, ...]
    total_gpus: int
    gpus_by_type: dict[str, int]

    @staticmethod
    def of(evaluation: Evaluation) -> PlanAnalysis:
        return PlanAnalysis(
            tuple(evaluation.binding()),
            evaluation.types,
            evaluation.total_gpus,
            dict(evaluation.gpus_by_type),
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "binding_constraints": [
                {**asdict(s), "slack": s.slack} for s in self.binding_constraints
            ],
            "query_types": [asdict(t) for t in self.query_types],
            "total_gpus": self.total_gpus,
            "gpus_by_type": dict(self.gpus_by_type),
        }


@dataclass(frozen=True, slots=True)
class EvaluateRequest:
    """Check and price `plan` for `scenario` (the change cost against `current`);
    factors != 1 add a stress report."""

    scenario: Scenario
    plan: Plan
    current: Plan | None = None
    delay_factor: float = 1.0
    error_factor: float = 1.0
    demand_factor: float = 1.0


@dataclass(frozen=True, slots=True)
class AuditRequest:
    """Solve the exact MILP of `scenario` within `time_limit_s` and certify
    `reference` (usually the live plan) against the proven bound."""

    scenario: Scenario
    reference: Plan | None
    time_limit_s: float
    options: ExactOptions = ExactOptions()
