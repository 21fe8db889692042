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

No incumbent is lost: a cancel or the guard's interrupt (SIGINT) makes HiGHS
stop at its next callback and report its incumbent as usual, and every
improving solution is also written to a file the moment it is found, read back
if the child had to be killed (`highs_worker.watch`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.solvers.milp.backends.outcome import SolverOutcome
from app.engine.solvers.milp.backends.process import (
    CancelSignal,
    ProcessRun,
    python_child_env,
    run_process,
)

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
    cancel: CancelSignal | None,
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
    run = run_process(
        cmd,
        log_path,
        hard_deadline,
        cancel,
        on_start,
        cwd=lp_path.parent,
        env=python_child_env(),
        interrupt_wait_s=0.3,
    )
    version = highs_version()
    if not out_path.exists():
        return _killed(run, lp_path.parent, log_path, version)
    doc = json.loads(out_path.read_text())
    term = _STATUS.get(doc["status"], "error")
    if run.cancelled and term != "optimal":
        term = "cancelled"
    elif term == "cancelled":
        term = "time_limit"  # interrupted by the guard's SIGINT ahead of the deadline
    has = bool(doc.get("has_solution")) and term in ("optimal", "time_limit", "cancelled")
    bound = doc.get("bound")
    return SolverOutcome(
        term,
        has,
        doc.get("objective") if has else None,
        bound if term in ("optimal", "time_limit", "cancelled") else None,
        doc.get("values", {}) if has else {},
        bool(doc.get("mipstart_used")),
        run.wall_s,
        doc["status"] + ("; cancelled, incumbent kept" if run.cancelled and has else ""),
        "highs",
        version,
    )


def _killed(run: ProcessRun, workdir: Path, log_path: Path, version: str) -> SolverOutcome:
    """The child was killed before it wrote its result: the last incumbent it
    wrote (values by column position, names in `highs.cols.json`), if any."""
    term = "cancelled" if run.cancelled else "time_limit" if run.killed_on_deadline else "error"
    inc, cols = workdir / "highs.inc.npy", workdir / "highs.cols.json"
    if term != "error" and inc.exists() and cols.exists():
        try:
            vals = np.load(inc)
            names = json.loads(cols.read_text())
            meta_path = workdir / "highs.inc.json"
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        except (OSError, ValueError):
            vals, names, meta = None, [], {}
        if vals is not None and len(vals) == len(names):
            values = {n: float(v) for n, v in zip(names, vals.tolist(), strict=True) if v != 0.0}
            return SolverOutcome(
                term,
                True,
                meta.get("objective"),
                meta.get("bound"),
                values,
                False,
                run.wall_s,
                "HiGHS was killed; its last incumbent was read back",
                "highs",
                version,
            )
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    msg = {
        "cancelled": "cancelled; HiGHS killed before it reported a solution",
        "time_limit": "HiGHS overran its time limit and was killed by the wall-clock guard",
        "error": f"HiGHS child exited with code {run.returncode}: {tail}",
    }[term]
    return SolverOutcome(
        term, False, None, None, wall_s=run.wall_s, message=msg, solver="highs", version=version
    )


def _child(argv: list[str]) -> int:
    """Child process: solve the LP file and write the JSON result. Improving
    solutions go to `highs.inc.npy` as they are found (column order in
    `highs.cols.json`), and SIGINT/SIGTERM interrupt HiGHS, which then reports its
    incumbent as usual (`highs_worker.watch`)."""
    lp, out, time_limit, gap, threads, mipstart = argv
    # Imported here, in the child only: highspy is an optional dependency and the
    # parent must import this module without it.
    import highspy

    # The same reason: highs_worker imports highspy at module level.
    from app.engine.solvers.milp.backends import highs_worker as hw

    hw.install_stop_handlers()
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", True)
    h.setOptionValue("log_to_console", True)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", float(gap))
    h.setOptionValue("threads", int(threads))
    t0 = time.monotonic()
    h.readModel(lp)
    mipstart_used = False
    names = list(h.getLp().col_names_)
    Path(out).with_name("highs.cols.json").write_text(json.dumps(names))
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
    hw.watch(h, Path(out).with_name("highs"))
    h.run()
    doc = hw.result_doc(h, bool(h.getLp().integrality_), mipstart_used, t0)
    values: dict[str, float] = {}
    if doc["has_solution"]:
        col = h.getSolution().col_value
        values = {n: float(v) for n, v in zip(names, col, strict=True) if v != 0.0}
    if doc["bound"] is None and doc["status"] == "kOptimal":
        doc["bound"] = doc["objective"]  # an LP: its optimum is its bound
    doc["values"] = values
    Path(out).write_text(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
