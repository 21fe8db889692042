"""HiGHS (highspy) as an optional second MILP backend, behind the same interface
as CBC: the LP file written by `app.engine.solvers.milp.model` is solved in a *child process*
(`python -m app.engine.solvers.milp.backends.highs …`), so the same hard wall-clock kill and
cancellation (`process.run_process`) apply; an in-process solver could not
be stopped if it ignored its time limit, and would hold the GIL-free C++ thread
beyond our control.

The child sets `time_limit`, `mip_rel_gap` and `threads`, loads the MIP start
(the same `index name value` file CBC reads) with `setSolution`, and writes a
JSON result: model status, objective, dual bound and the nonzero column values
by LP name.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.solvers.milp.backends.outcome import SolverOutcome
from app.engine.solvers.milp.backends.process import run_process

_STATUS = {
    "kOptimal": "optimal",
    "kTimeLimit": "time_limit",
    "kIterationLimit": "time_limit",
    "kSolutionLimit": "time_limit",
    "kInterrupt": "cancelled",
    "kHighsInterrupt": "cancelled",
    "kInfeasible": "infeasible",
    "kUnbounded": "unbounded",
    "kUnboundedOrInfeasible": "infeasible",
}


@cache
def highs_version() -> str:
    try:
        return version("highspy")
    except Exception:
        return "unknown"


def run_highs(
    lp_path: Path,
    time_limit_s: float,
    relative_gap: float,
    threads: int,
    cancel: threading.Event | None,
    mipstart: Path | None,
    hard_deadline: float,
    on_start: Callable[[Any], None] | None = None,
) -> SolverOutcome:
    """Solve with HiGHS in a child process."""
    out_path = lp_path.parent / "highs.json"
    log_path = lp_path.parent / "highs.log"
    cmd = [
        sys.executable,
        "-m",
        "app.engine.solvers.milp.backends.highs",
        str(lp_path),
        str(out_path),
        repr(max(0.1, float(time_limit_s))),
        repr(float(relative_gap)),
        str(int(threads)),
        str(mipstart) if mipstart is not None else "",
    ]
    root = str(Path(__file__).resolve().parents[5])  # the directory holding `app`
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    run = run_process(cmd, log_path, hard_deadline, cancel, on_start, cwd=lp_path.parent, env=env)
    version = highs_version()
    if run.cancelled:
        return SolverOutcome(
            "cancelled",
            False,
            None,
            None,
            wall_s=run.wall_s,
            message="cancelled; HiGHS killed",
            solver="highs",
            version=version,
        )
    if not out_path.exists():
        term = "time_limit" if run.killed_on_deadline else "error"
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        msg = (
            "HiGHS overran its time limit and was killed by the wall-clock guard"
            if run.killed_on_deadline
            else f"HiGHS child exited with code {run.returncode}: {tail}"
        )
        return SolverOutcome(
            term, False, None, None, wall_s=run.wall_s, message=msg, solver="highs", version=version
        )
    doc = json.loads(out_path.read_text())
    term = _STATUS.get(doc["status"], "error")
    has = bool(doc.get("has_solution")) and term in ("optimal", "time_limit")
    bound = doc.get("bound")
    return SolverOutcome(
        term,
        has,
        doc.get("objective") if has else None,
        bound if term in ("optimal", "time_limit") else None,
        doc.get("values", {}) if has else {},
        bool(doc.get("mipstart_used")),
        run.wall_s,
        doc["status"],
        "highs",
        version,
    )


def _child(argv: list[str]) -> int:
    """Child process: solve the LP file and write the JSON result."""
    lp, out, time_limit, gap, threads, mipstart = argv
    # Here, in the child only: highspy is an optional extra, and the parent imports
    # this module whether or not it is installed.
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", True)
    h.setOptionValue("log_to_console", True)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", float(gap))
    h.setOptionValue("threads", int(threads))
    t0 = time.monotonic()
    h.readModel(lp)
    mipstart_used = False
    names = list(h.getLp().col_names_)
    if mipstart:
        pos = {n: k for k, n in enumerate(names)}
        idx, val = [], []
        for line in Path(mipstart).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] in pos:
                idx.append(pos[parts[1]])
                val.append(float(parts[2]))
        if idx:
            st = h.setSolution(len(idx), np.array(idx, dtype=np.int32), np.array(val))
            mipstart_used = st == highspy.HighsStatus.kOk
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    has = int(info.primal_solution_status) == 2  # kSolutionStatusFeasible
    values: dict[str, float] = {}
    objective = None
    if has:
        col = h.getSolution().col_value
        values = {n: float(v) for n, v in zip(names, col, strict=True) if v != 0.0}
        objective = float(info.objective_function_value)
    bound = float(info.mip_dual_bound) if h.getLp().integrality_ else objective
    if bound is not None and not np.isfinite(bound):
        bound = None
    doc = {
        "status": status.name if hasattr(status, "name") else str(status).split(".")[-1],
        "has_solution": has,
        "objective": objective,
        "bound": bound,
        "mipstart_used": mipstart_used,
        "values": values,
        "wall_s": time.monotonic() - t0,
    }
    Path(out).write_text(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
