"""What every MILP backend returns, before the evaluator has looked at anything."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SolverOutcome:
    """What a backend returns (before the evaluator has looked at anything)."""

    termination: str  # optimal | time_limit | infeasible | unbounded | cancelled | error
    has_solution: bool
    objective: float | None  # the solver's objective of the returned solution
    bound: float | None  # best proven lower bound, None if unknown
    values: dict[str, float] = field(default_factory=dict)  # by LP column name
    mipstart_used: bool = False
    wall_s: float = 0.0
    message: str = ""
    solver: str = "cbc"
    version: str = ""
    incumbent: float | None = None  # best incumbent the solver mentioned (log only)
