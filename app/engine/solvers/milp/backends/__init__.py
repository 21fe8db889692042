"""MILP solver backends: CBC (`cbc`, the default) and HiGHS (`highs`), each a
child process under the same hard wall-clock guard (`process.run_process`),
both answering with a `SolverOutcome`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.engine.solvers.milp.backends.cbc import cbc_seconds, cbc_version, run_cbc
from app.engine.solvers.milp.backends.highs import highs_version, run_highs
from app.engine.solvers.milp.backends.outcome import SolverOutcome
from app.engine.solvers.milp.backends.process import GRACE_S, CancelSignal

BACKENDS = ("cbc", "highs")


def backend_version(backend: str) -> str:
    return cbc_version() if backend == "cbc" else highs_version()


def run_backend(
    backend: str,
    lp_path: Path,
    time_limit_s: float,
    relative_gap: float,
    threads: int,
    cancel: CancelSignal | None,
    mipstart: Path | None,
    deadline: float,
    on_process: Callable[[Any], None] | None,
) -> SolverOutcome:
    hard = deadline + GRACE_S
    if backend == "highs":
        return run_highs(
            lp_path, time_limit_s, relative_gap, threads, cancel, mipstart, hard, on_process
        )
    out = run_cbc(
        lp_path,
        cbc_seconds(time_limit_s),
        relative_gap,
        threads,
        cancel,
        mipstart,
        hard,
        on_process,
    )
    return replace(out, version=cbc_version())
