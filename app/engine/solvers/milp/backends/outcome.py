"""What every MILP backend returns, before the evaluator has looked at anything."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SolverOutcome:
    """What a backend returns (before the evaluator has looked at anything)."""

    termination: str
    has_solution: bool
    objective: float | None
    bound: float | None
    values: dict[str, float] = field(default_factory=dict)
    mipstart_used: bool = False
    wall_s: float = 0.0
    message: str = ""
    solver: str = "cbc"
    version: str = ""
    incumbent: float | None = None  # best incumbent the solver mentioned (log only)
