"""The LP relaxation of the §1 MILP (integrality of r and z dropped): a lower
bound, and the fractional solution the LPR baseline rounds. Solved with CBC under
the same hard wall-clock guard."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from app.engine.model.domain import Scenario
from app.engine.perf.profiles import EngineProfile
from app.engine.plan.candidates import CandidateTable, candidate_table
from app.engine.plan.plan import Plan
from app.engine.solvers.milp.backends.cbc import run_cbc
from app.engine.solvers.milp.backends.process import CancelSignal
from app.engine.solvers.milp.model import MilpModel, Solution, build_model, read_solution, write_lp

# --------------------------------------------------------------------------------------
# LP relaxation (LPR baseline, bound checks)


@dataclass(frozen=True)
class LpRelaxation:
    """The LP relaxation's optimum (a lower bound on the MILP) and its solution,
    or `status` != "optimal" and no values."""

    status: str  # optimal | infeasible | time_limit | cancelled | error | ...
    bound: float | None
    model: MilpModel
    solution: Solution | None
    wall_s: float


def lp_relaxation(
    scenario: Scenario,
    time_limit_s: float = 60.0,
    current: Plan | None = None,
    cancel: CancelSignal | None = None,
    table: CandidateTable | None = None,
    profile: EngineProfile | None = None,
) -> LpRelaxation:
    """Solve the LP relaxation of the §1 MILP (integrality of r and z dropped) with
    CBC under the same hard wall-clock guard."""
    t0 = time.monotonic()
    if table is None:
        table = candidate_table(scenario, profile)
    mm = build_model(table, current=current, relax=True)
    with tempfile.TemporaryDirectory(prefix="llm-allocator-lp-") as tmp:
        wm = write_lp(mm, Path(tmp) / "model.lp")
        remaining = max(0.1, time_limit_s - (time.monotonic() - t0))
        out = run_cbc(wm.path, remaining, 0.0, 1, cancel)
        sol = read_solution(mm, wm, out.values) if out.has_solution else None
    status = out.termination
    bound = out.objective if status == "optimal" else None
    return LpRelaxation(
        status, bound, mm, sol if status == "optimal" else None, time.monotonic() - t0
    )
