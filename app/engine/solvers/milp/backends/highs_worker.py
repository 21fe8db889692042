"""The HiGHS solver process of the exact polish (child side).

Run as `python -m app.engine.solvers.milp.backends.highs_worker`; the parent
(`highs_session.HighsSession`) starts it at the beginning of a solve so that
importing highspy (~0.2 s) overlaps the heuristic search, then sends jobs, one
JSON line each on stdin:

    {"model": ".../m.npz", "start": ".../s.npy" | "", "out": ".../stage1",
     "time_limit": 0.4, "gap": 1e-4, "threads": 1, "max_nodes": null}

`model` holds the arrays of `app.engine.solvers.milp.arrays.MilpArrays.to_npz`.
For each job the child writes `<out>.json` (status, objective, dual bound, whether
the MIP start was taken, node count) and `<out>.npy` (column values, when it has a
solution), then prints `done` on stdout.

Nothing found is lost when the parent has to stop the child:
* every improving solution is written at once to `<out>.inc.npy` (values) and
  `<out>.inc.json` (objective, dual bound), each by an atomic rename, so the
  parent can read the incumbent even after a SIGKILL;
* SIGTERM (the parent's "stop now") sets a flag that HiGHS's interrupt callbacks
  turn into a user interrupt: HiGHS stops within one callback and the child
  writes its result as usual, then exits.

The incumbent files are written from HiGHS's callbacks, which run Python code
in this process: that is also where a pending SIGTERM is noticed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import highspy
import numpy as np

_STOP = {"flag": False}


def _on_term(_sig: int, _frame: Any) -> None:
    _STOP["flag"] = True


def _atomic_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _atomic_npy(path: Path, values: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, values)
    os.replace(tmp, path)


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _model(h: highspy.Highs, path: str) -> tuple[int, bool]:
    """Load the arrays of `MilpArrays.to_npz`; (columns, any integer column)."""
    z = np.load(path)
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    n = len(z["col_cost"])
    lp.num_col_ = n
    lp.num_row_ = len(z["row_lower"])
    lp.col_cost_ = z["col_cost"]
    lp.col_lower_ = z["col_lower"]
    lp.col_upper_ = np.where(np.isfinite(z["col_upper"]), z["col_upper"], inf)
    lp.row_lower_ = np.where(np.isfinite(z["row_lower"]), z["row_lower"], -inf)
    lp.row_upper_ = np.where(np.isfinite(z["row_upper"]), z["row_upper"], inf)
    lp.offset_ = float(z["offset"][0])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = z["a_start"]
    lp.a_matrix_.index_ = z["a_index"]
    lp.a_matrix_.value_ = z["a_value"]
    integer = bool(z["integer"].any())
    if integer:
        kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
        lp.integrality_ = [kinds[int(b)] for b in z["integer"]]
    h.passModel(lp)
    return n, integer


def install_stop_handlers() -> None:
    """SIGTERM and SIGINT ask the running solve to stop (see `watch`)."""
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)


def stop_requested() -> bool:
    return bool(_STOP["flag"])


def watch(h: highspy.Highs, out: Path) -> dict[str, Any]:
    """Subscribe the callbacks that write every improving solution to
    `<out>.inc.npy` / `<out>.inc.json` (atomically; the dual bound is refreshed at
    most every 50 ms) and turn a stop request into a HiGHS user interrupt."""
    inc_npy, inc_json = Path(f"{out}.inc.npy"), Path(f"{out}.inc.json")
    state: dict[str, Any] = {"bound": None, "objective": None, "written": 0.0}

    def improving(e: Any) -> None:
        obj = float(e.data_out.objective_function_value)
        state["objective"] = obj
        state["bound"] = _finite(e.data_out.mip_dual_bound)
        _atomic_npy(inc_npy, np.asarray(e.data_out.mip_solution, dtype=np.float64))
        _atomic_json(inc_json, {"objective": obj, "bound": state["bound"]})
        if _STOP["flag"]:
            e.interrupt()

    def interrupt(e: Any) -> None:
        if _STOP["flag"]:
            e.interrupt()
            return
        if e.callback_type == highspy.cb.HighsCallbackType.kCallbackMipInterrupt:
            bound = _finite(e.data_out.mip_dual_bound)
            now = time.monotonic()
            if (
                bound != state["bound"]
                and state["objective"] is not None
                and now - state["written"] > 0.05
            ):
                state["bound"], state["written"] = bound, now
                _atomic_json(inc_json, {"objective": state["objective"], "bound": bound})

    h.cbMipImprovingSolution.subscribe(improving)
    h.cbMipInterrupt.subscribe(interrupt)
    h.cbSimplexInterrupt.subscribe(interrupt)
    h.cbIpmInterrupt.subscribe(interrupt)
    return state


def result_doc(h: highspy.Highs, integer: bool, mipstart_used: bool, t0: float) -> dict[str, Any]:
    """What a finished (or interrupted) run says, for the parent."""
    status = h.getModelStatus()
    info = h.getInfo()
    has = int(info.primal_solution_status) == 2  # kSolutionStatusFeasible
    return {
        "status": status.name if hasattr(status, "name") else str(status).split(".")[-1],
        "has_solution": has,
        "objective": float(info.objective_function_value) if has else None,
        "bound": _finite(info.mip_dual_bound) if integer else None,
        "mipstart_used": mipstart_used,
        "nodes": int(info.mip_node_count) if integer else 0,
        "interrupted": bool(_STOP["flag"]),
        "wall_s": time.monotonic() - t0,
    }


def solve_job(job: dict[str, Any]) -> None:
    """Solve one job and write its result files."""
    out = Path(job["out"])
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", max(0.01, float(job["time_limit"])))
    h.setOptionValue("mip_rel_gap", float(job["gap"]))
    h.setOptionValue("threads", int(job.get("threads", 1)))
    if job.get("max_nodes"):
        h.setOptionValue("mip_max_nodes", int(job["max_nodes"]))
    t0 = time.monotonic()
    n, integer = _model(h, job["model"])
    mipstart_used = False
    if job.get("start"):
        start = np.load(job["start"])
        if len(start) == n:
            sol = highspy.HighsSolution()
            sol.col_value = start.tolist()
            sol.value_valid = True
            mipstart_used = h.setSolution(sol) == highspy.HighsStatus.kOk
    watch(h, out)
    h.run()
    doc = result_doc(h, integer, mipstart_used, t0)
    if doc["has_solution"]:
        _atomic_npy(Path(f"{out}.npy"), np.asarray(h.getSolution().col_value, dtype=np.float64))
    _atomic_json(Path(f"{out}.json"), doc)


def main() -> int:
    install_stop_handlers()
    # The protocol owns the original stdout; whatever HiGHS prints (its banner)
    # goes to stderr, the parent's log.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    print("ready", file=proto, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            solve_job(job)
        except Exception as exc:  # reported to the parent, who decides
            _atomic_json(Path(f"{job['out']}.json"), {"status": "error", "message": repr(exc)})
        print("done", file=proto, flush=True)
        if _STOP["flag"]:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
