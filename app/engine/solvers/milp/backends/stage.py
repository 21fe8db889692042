"""One solve of an array-built MILP (`app.engine.solvers.milp.arrays`) by a
solver process, as the exact polish runs it: what came back (`StageOutcome`) and
the two ways to run it (`HighsSession` keeps one HiGHS process for a whole
polish, `run_cbc_stage` starts CBC per stage).

Both run under a hard deadline and a stop signal, and neither loses an
incumbent the solver reported: HiGHS writes each improving solution to a file
as it finds it (read after a kill), CBC is asked to stop early and interrupted
(SIGINT: it writes its incumbent) before it is killed.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from app.engine.solvers.milp.arrays import MilpArrays, write_mps
from app.engine.solvers.milp.backends.cbc import run_cbc

# Solver statuses of a stage, after normalisation.
#   optimal      the model (as given: maybe restricted) solved to the gap target
#   limit        stopped by its time/node limit or by the deadline, with or without values
#   stopped      stopped by the caller's stop signal
#   infeasible   proven infeasible
#   error        anything else (no values)


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class StageLimits:
    """When one stage ends: at `deadline` (monotonic), when `stop` is set, at the
    relative `gap`, or (deterministic mode) after `max_nodes` branch-and-bound
    nodes."""

    deadline: float
    stop: StopSignal | None = None
    gap: float = 1e-4
    max_nodes: int | None = None


@dataclass(frozen=True)
class StageOutcome:
    status: str  # optimal | limit | stopped | infeasible | error
    values: np.ndarray | None  # column values of the best solution the solver reported
    objective: float | None  # the solver's objective of `values` (offset included)
    bound: float | None  # the solver's dual bound on the model it was given
    mipstart_used: bool
    wall_s: float
    recovered: bool = False  # values read back from the incumbent file after a kill
    message: str = ""
    raw: str = ""  # the solver's own status (HiGHS model status name)
    solver: str = ""  # "highs" | "cbc" (set by the runner that chose)


def stage_status(raw: str, interrupted: bool) -> str:
    """HiGHS model status names → stage statuses."""
    if raw == "kOptimal":
        return "optimal"
    if raw in ("kInfeasible", "kUnboundedOrInfeasible"):
        return "infeasible"
    if raw in ("kInterrupt", "kHighsInterrupt"):
        return "stopped" if interrupted else "limit"
    if raw in ("kTimeLimit", "kIterationLimit", "kSolutionLimit", "kNodeLimit"):
        return "limit"
    return "error"


class CbcRunner:
    """CBC per stage: the array model written as MPS (`arrays.write_mps`), the MIP
    start as CBC's `index name value` file (integer columns), CBC under the
    process guard with its own limit a little before the deadline and SIGINT
    (stop and write the incumbent) shortly before the kill."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="llm-allocator-polish-cbc-")
        self.dir = Path(self._tmp.name)
        self._jobs = 0

    def run(self, ma: MilpArrays, start: np.ndarray | None, limits: StageLimits) -> StageOutcome:
        t0 = time.monotonic()
        self._jobs += 1
        work = self.dir / f"stage{self._jobs}"
        work.mkdir()
        names = write_mps(ma, work / "model.mps")
        mipstart = None
        if start is not None:
            rows = [
                f"{k} {names[k]} {round(float(start[k]))}"
                for k in np.flatnonzero(ma.integer & (start > 0.5)).tolist()
            ]
            if rows:
                mipstart = work / "start.sol"
                mipstart.write_text("\n".join(rows) + "\n")
        remaining = limits.deadline - time.monotonic()
        if remaining <= 0.02:
            return StageOutcome("limit", None, None, None, False, 0.0, message="no time left")
        out = run_cbc(
            work / "model.mps",
            max(0.05, 0.8 * remaining - 0.05),
            limits.gap,
            1,
            limits.stop,
            mipstart,
            hard_deadline=limits.deadline,
            interrupt_wait_s=min(0.15, 0.3 * remaining),
        )
        values = None
        recovered = False
        message = out.message
        if out.has_solution:
            values = np.array([out.values.get(n, 0.0) for n in names])
        elif out.mipstart_used and start is not None:
            # CBC was killed before writing its solution file (it writes no
            # incumbent before it stops): the MIP start it accepted is the best
            # solution we can vouch for; anything better it found is lost.
            values, recovered = start, True
            message += "; CBC's own incumbent was lost, its accepted MIP start is returned"
        status = {
            "optimal": "optimal",
            "time_limit": "limit",
            "cancelled": "stopped",
            "infeasible": "infeasible",
        }.get(out.termination, "error")
        objective = (
            float(ma.col_cost @ values + ma.offset)
            if recovered and values is not None
            else None
            if out.objective is None or values is None
            else out.objective + ma.offset
        )
        bound = None if out.bound is None else out.bound + ma.offset
        return StageOutcome(
            status, values, objective, bound, out.mipstart_used, time.monotonic() - t0,
            recovered=recovered, message=message, raw=out.status_line,
        )  # fmt: skip

    def ready_now(self) -> bool:
        return True  # CBC starts per stage, in milliseconds

    def close(self) -> None:
        self._tmp.cleanup()
