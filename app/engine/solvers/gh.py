"""GH as a planner (`solve(algorithm="gh")`): the greedy pass with its
constraint-first retries (`greedy.greedy`) and, when its plan still breaks a
constraint although every mechanism is on, AGH's local moves for at most
`REPAIR_S` seconds, ranking feasibility first (a move is taken when it lowers
the shortfall, or the cost at equal shortfall): a single greedy pass cannot see
that several partly used replicas of different deployments would fit the budget
(or the GPUs) as fewer full ones, and these moves can.

Ablations (a mechanism off) are the single pass, unrepaired: they measure the
paper's mechanisms.
"""

from __future__ import annotations

from app.engine.plan.candidates import CandidateTable
from app.engine.plan.plan import Plan
from app.engine.solvers.greedy import Mechanisms, greedy
from app.engine.solvers.search import Deadline, LocalSearch, StopSignal
from app.engine.solvers.state import AllocationState

# The repair's time cap, seconds (GH stays a fast planner).
REPAIR_S = 0.1


def gh(
    table: CandidateTable,
    mech: Mechanisms = Mechanisms(),
    current: Plan | None = None,
    stop: StopSignal | None = None,
) -> tuple[AllocationState, bool]:
    """GH's plan, and whether the repair ran."""
    st = greedy(table, mech=mech, current=current)
    if mech != Mechanisms() or st.shortfall() <= 1e-9:
        return st, False
    ls = LocalSearch(table, mech, Deadline(REPAIR_S, stop))
    return ls.improve(st), True
