"""Code that runs in the solver processes, never in the service's own process.

It imports only the engine facade. Results cross the process boundary as plain
JSON-able dicts; errors too (`{"ok": false, ...}`): the engine's exceptions carry
two constructor arguments and do not survive pickling, and a worker should never
hand the parent an object it cannot unpickle.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

# Constraints worth reporting as "binding" (coverage and unmet caps are equalities
# or bookkeeping and always sit at their bound).
BINDING_KINDS = ("capacity", "availability", "accuracy", "budget", "storage")


def init_worker() -> None:
    """Pool-process initializer. A process group of its own lets the parent kill the
    worker together with any CBC it started; ignoring SIGINT leaves Ctrl-C to the
    parent, which shuts the pool down in order."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    import app.engine.api  # noqa: F401 - pay the numpy/engine import before the first solve


def _exit_with_parent() -> None:
    """Exit when the service process dies (kill -9 included). A pool worker holds
    both ends of its task queue, so it never sees EOF and would otherwise wait
    forever as an orphan."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def warm_up() -> bool:
    return True


def plain(doc: Any) -> Any:
    """JSON round trip: numpy scalars become floats, NaN/inf become null."""
    text = json.dumps(doc, allow_nan=True, default=float)
    return json.loads(text, parse_constant=lambda _c: None)


def _error(exc: BaseException) -> dict[str, Any]:
    from app.engine.errors import InputError

    if isinstance(exc, InputError):
        return {"ok": False, "kind": "input", "field": exc.field, "message": exc.message}
    return {
        "ok": False,
        "kind": "error",
        "message": f"{type(exc).__name__}: {exc}",
        "traceback": traceback.format_exc(limit=20),
    }


def analyse(
    spec: dict[str, Any], plan: dict[str, Any], current_plan: dict[str, Any] | None
) -> dict[str, Any]:
    """What the evaluator says beyond the plan document: which constraints bind,
    how each query type is served, GPUs in use."""
    from app.engine.api import evaluate_documents

    ev = evaluate_documents(spec, plan, current_plan)
    binding = [
        c
        for c in ev.get("constraints", [])
        if c.get("constraint") in BINDING_KINDS
        and c.get("slack") is not None
        and c["slack"] <= 1e-3 * max(1.0, abs(c.get("rhs") or 0.0))
    ]
    return {
        "binding_constraints": binding,
        "query_types": ev.get("query_types", []),
        "total_gpus": ev.get("total_gpus"),
        "gpus_by_type": ev.get("gpus_by_type", {}),
    }


def solve_job(
    spec: dict[str, Any],
    algorithm: str,
    time_budget_s: float,
    seed: int,
    current_plan: dict[str, Any] | None,
) -> dict[str, Any]:
    """One solve plus its analysis."""
    try:
        from app.engine.api import solve_documents

        result = solve_documents(spec, algorithm, time_budget_s, seed, current_plan)
        analysis = analyse(spec, result["plan"], current_plan)
        return {"ok": True, "result": plain(result), "analysis": plain(analysis)}
    except Exception as exc:
        return _error(exc)


def audit_child(
    conn: Connection,
    cancel: MpEvent,
    spec: dict[str, Any],
    plan: dict[str, Any] | None,
    time_limit_s: float,
    relative_gap: float,
    threads: int,
) -> None:
    """Entry point of an audit process: runs the MILP audit and sends one message.
    A watcher thread turns the parent's cross-process cancel into the
    threading.Event the engine understands (it then kills CBC within 1 s). It also
    cancels if the parent dies (kill -9): an orphaned audit would otherwise keep
    CBC busy until its time limit."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    local_cancel = threading.Event()
    parent = os.getppid()

    def watch() -> None:
        while not cancel.wait(0.5):
            if os.getppid() != parent:
                break
        local_cancel.set()

    threading.Thread(target=watch, daemon=True, name="cancel-watch").start()
    try:
        from app.engine.api import audit_documents

        result = audit_documents(
            spec,
            plan,
            time_limit_s=time_limit_s,
            relative_gap=relative_gap,
            threads=threads,
            cancel=local_cancel,
        )
        msg: dict[str, Any] = {"ok": True, "result": plain(result)}
    except Exception as exc:
        msg = _error(exc)
    try:
        conn.send(msg)
    finally:
        conn.close()


def is_finite_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
