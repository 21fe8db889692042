"""CBC as a subprocess under a hard wall-clock limit (SPEC §3 "Exact").

CBC is never trusted to stop on its own: it can sit in the root LP or in
preprocessing long past `-sec`. `run_cbc` therefore

* starts CBC in its own process group (`start_new_session=True`) with
  `-timeMode elapsed -sec <limit> -ratioGap <gap> -threads <n>`;
* asks CBC for less time than it has (`cbc_seconds`), because CBC overruns
  `-sec` and a run killed by the guard loses its incumbent;
* polls every `POLL_S` seconds: on `cancel` it interrupts CBC (SIGINT: CBC stops
  and writes its incumbent, in ~30 ms) and kills the process group
  `CANCEL_WAIT_S` later if it is still there; at `time_limit_s + GRACE_S − INTERRUPT_WAIT_S` it
  sends SIGINT (CBC's own "stop and report the incumbent" path) and at
  `time_limit_s + GRACE_S` SIGKILL, whatever CBC is doing;
* reads the solution file (status line, objective, column values by LP name) and
  the log (best bound, incumbents, whether a MIP start was accepted).

The guard itself (`process.run_process`) is shared with the HiGHS backend.

Termination reasons are those of `app.engine.solvers.milp.model`: optimal, time_limit,
infeasible, unbounded, cancelled, error. The solution file's values are returned
only when the file exists and reports a solution.
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cbcbox

from app.engine.solvers.milp.backends.outcome import SolverOutcome
from app.engine.solvers.milp.backends.process import (
    GRACE_S,
    INTERRUPT_WAIT_S,
    CancelSignal,
    ProcessRun,
    run_process,
)

# CBC prints 1e+50 as the objective of "no solution".
_NO_SOLUTION = 1e40


# --------------------------------------------------------------------------------------
# CBC specifics


@cache
def cbc_executable() -> str:
    """The CBC binary shipped by cbcbox (never whatever `cbc` is on PATH)."""
    return str(cbcbox.cbc_bin_path())


@cache
def cbc_version() -> str:
    """CBC's version as its banner prints it (e.g. "devel (git:146ce89)"), with the
    cbcbox package version."""
    try:
        out = subprocess.run(
            [cbc_executable(), "-quit"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    m = re.search(r"(?:CBC|Cbc)\s+(?:version\s+)?([^\s—-][^\n—]*?)\s*(?:—|\n|$)", out)
    ver = m.group(1).strip() if m else "unknown"
    with contextlib.suppress(PackageNotFoundError):
        ver += f"; cbcbox {version('cbcbox')}"
    return ver


@dataclass(frozen=True)
class CbcOutcome(SolverOutcome):
    """A backend's outcome with what CBC said besides: the solution file's status
    line and the log's tail. (`bound` and `incumbent` are read from the log;
    `version` is left to `run_backend`: asking the binary costs a process.)"""

    status_line: str = ""
    log_tail: str = ""


def cbc_seconds(remaining_s: float) -> float:
    """CBC's own `-sec` for a wall-clock budget. CBC overruns its limit (the root
    LP, cut generation and post-processing are not time-checked, and on a loaded
    machine this build's clock drifts from wall time), and a run killed by the
    guard loses its incumbent; so CBC is asked to stop well before the guard."""
    return max(0.1 * remaining_s, 0.85 * remaining_s - 0.5)


def cbc_command(
    lp_path: Path,
    sol_path: Path,
    time_limit_s: float,
    relative_gap: float,
    threads: int,
    mipstart_path: Path | None = None,
) -> list[str]:
    cmd = [cbc_executable(), str(lp_path)]
    cmd += [
        "-timeMode",
        "elapsed",
        "-sec",
        f"{max(time_limit_s, 0.1):.3f}",
        "-ratioGap",
        repr(float(relative_gap)),
        "-threads",
        str(int(threads)),
    ]
    if mipstart_path is not None:
        cmd += ["-mipstart", str(mipstart_path)]
    cmd += ["-solve", "-solu", str(sol_path)]
    return cmd


def run_cbc(
    lp_path: Path,
    time_limit_s: float,
    relative_gap: float = 1e-4,
    threads: int = 1,
    cancel: CancelSignal | None = None,
    mipstart_path: Path | None = None,
    hard_deadline: float | None = None,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
    interrupt_wait_s: float = INTERRUPT_WAIT_S,
) -> CbcOutcome:
    """Solve the LP-format model at `lp_path` with CBC. `time_limit_s` is CBC's own
    limit; the process is killed at `hard_deadline` (monotonic; default now +
    time_limit_s + GRACE_S) whatever CBC is doing."""
    workdir = lp_path.parent
    sol_path = workdir / "cbc.sol"
    log_path = workdir / "cbc.log"
    if sol_path.exists():
        sol_path.unlink()
    if hard_deadline is None:
        hard_deadline = time.monotonic() + time_limit_s + GRACE_S
    cmd = cbc_command(lp_path, sol_path, time_limit_s, relative_gap, threads, mipstart_path)
    try:
        run = run_process(
            cmd,
            log_path,
            hard_deadline,
            cancel,
            on_start,
            cwd=workdir,
            interrupt_wait_s=interrupt_wait_s,
        )
    except OSError as exc:
        return CbcOutcome("error", False, None, None, message=f"cannot run CBC: {exc}")
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    tail = "\n".join(log.splitlines()[-30:])
    bound = parse_bound(log)
    incumbent = parse_incumbent(log)
    mipstart_used = _mipstart_accepted(log)
    status_line: str = ""
    objective: float | None = None
    values: dict[str, float] = {}
    if sol_path.exists():
        status_line, objective, values = parse_solution_file(sol_path.read_text(errors="replace"))
    termination, has_solution = classify(status_line, objective, run, log)
    if run.cancelled and termination != "optimal":
        # Cancelled: SIGINT first, so CBC usually wrote its incumbent before it went.
        termination = "cancelled"
        msg = "cancelled; CBC interrupted" + (
            " (its incumbent was kept)"
            if has_solution
            else f" (its incumbent, objective {incumbent:g}, was lost)"
            if incumbent is not None
            else ""
        )
    elif termination == "error" and not status_line:
        msg = f"CBC exited with code {run.returncode} and no solution file"
    elif run.killed_on_deadline and not has_solution:
        msg = "CBC overran its time limit and was killed by the wall-clock guard" + (
            f" (its incumbent, objective {incumbent:g}, was lost)" if incumbent is not None else ""
        )
    elif run.killed_on_deadline:
        msg = "CBC overran its time limit; interrupted by the wall-clock guard"
    else:
        msg = status_line
    if not has_solution:
        values, objective = {}, None
    return CbcOutcome(
        termination,
        has_solution,
        objective,
        bound,
        values,
        mipstart_used,
        run.wall_s,
        msg,
        incumbent=incumbent,
        status_line=status_line,
        log_tail=tail,
    )


def classify(
    status_line: str, objective: float | None, run: ProcessRun, log: str = ""
) -> tuple[str, bool]:
    """(termination, has_solution) from the solution file's status line (and the
    log, where this build writes "Status unknown" after proving infeasibility in
    its bound tightening: "Bound tightening: infeasibility proved")."""
    s = status_line.lower()
    if s.startswith("status unknown") and not run.killed_on_deadline:
        low = log.lower()
        if re.search(r"infeasibility proved|proven infeasible|problem is infeasible", low):
            return "infeasible", False
        if re.search(r"proven unbounded|problem is unbounded", low):
            return "unbounded", False
    has_value = (
        objective is not None
        and math.isfinite(objective)
        and abs(objective) < _NO_SOLUTION
        # "Stopped on time (no integer solution - continuous used)": the values are
        # the LP relaxation's, not a solution.
        and "no integer solution" not in s
        and "continuous used" not in s
    )
    if not s:
        return ("time_limit" if run.killed_on_deadline else "error"), False
    if "infeasible" in s:
        # "Infeasible", "Integer infeasible", "Problem proven infeasible"
        return "infeasible", False
    if "unbounded" in s:
        return "unbounded", False
    if s.startswith("optimal"):
        # A completed search (even one that finished just as the guard's SIGINT
        # arrived: an interrupted search reports "Stopped on ctrl-c" instead).
        return "optimal", has_value
    if "stopped" in s or "ctrl-c" in s or "time" in s:
        # "Stopped on time", "Stopped on ctrl-c", "Stopped on iterations/nodes/…"
        return "time_limit", has_value
    return "error", has_value


_STATUS_RE = re.compile(r"^(?P<status>.*?)\s*-\s*objective value\s+(?P<obj>\S+)", re.IGNORECASE)


def parse_solution_file(text: str) -> tuple[str, float | None, dict[str, float]]:
    """CBC's `-solu` file: a status line ("Optimal - objective value 8.0",
    "Stopped on time - objective value …", "Infeasible - objective value …") then
    `index name value reduced_cost` rows (nonzero columns only; some builds mark
    infeasible rows with a leading `**`)."""
    lines = text.splitlines()
    if not lines:
        return "", None, {}
    head = lines[0].strip()
    objective: float | None = None
    m = _STATUS_RE.match(head)
    status = head
    if m:
        status = m.group("status").strip()
        objective = _float(m.group("obj"))
    values: dict[str, float] = {}
    for line in lines[1:]:
        parts = line.replace("**", " ").split()
        if len(parts) < 3:
            continue
        try:
            values[parts[1]] = float(parts[2])
        except ValueError:
            continue
    return status, objective, values


_BOUND_PATTERNS = (
    # Classic "Result -" summary block.
    re.compile(r"^\s*Lower bound:\s+(\S+)", re.MULTILINE),
    # "Partial search - best objective X (best possible Y), took …"
    re.compile(r"best possible\s+([^\s,)]+)", re.MULTILINE),
    # This build's summary line: "✔ Optimal — Obj: 8   Bound: 8   Gap: 0.00% …"
    re.compile(r"\bBound:\s+(\S+)", re.MULTILINE),
    # This build's branch-and-bound table (when CBC was killed mid-search):
    # "Nodes OnTree Depth BestSol [Method] BestBound Gap% Time(s)"
    re.compile(
        r"^\s*(?:\S\s+)?\d+\s+\d+\s+\d+\s+\S+\s+(?:.*?\s)?(\S+)\s+\S+%\s+\S+\s*$", re.MULTILINE
    ),
    # Last resort when killed early: the root LP relaxation ("✔ LP Optimal — … Obj: X").
    re.compile(r"LP Optimal\b.*?\bObj:\s+(\S+)", re.MULTILINE),
)


def parse_bound(log: str) -> float | None:
    """The best lower bound CBC printed, by the most authoritative pattern that
    occurs (its last occurrence), rounded *down* to the printed precision: CBC
    prints bounds with `%g` (6 significant digits), and a proven lower bound must
    not be overstated by rounding."""
    for pat in _BOUND_PATTERNS:
        for raw in reversed(pat.findall(log)):
            v = _float(raw)
            if v is not None and math.isfinite(v) and abs(v) < _NO_SOLUTION:
                return _round_down_printed(raw, v)
    return None


def _round_down_printed(raw: str, v: float) -> float:
    if v == 0.0:
        return 0.0
    mantissa = re.sub(r"[eE].*$", "", raw.strip().lstrip("+-")).replace(".", "").lstrip("0")
    digits = max(6, len(mantissa))
    ulp = 10.0 ** (math.floor(math.log10(abs(v))) - (digits - 1))
    return v - 0.5 * ulp


_INCUMBENT_PATTERNS = (
    re.compile(r"Integer solution of\s+(\S+)\s+found", re.MULTILINE),
    re.compile(r"MIPStart provided solution with cost\s+(\S+)", re.MULTILINE),
    re.compile(
        r"^\s*(?:\S\s+)?\d+\s+\d+\s+\d+\s+(\S+)\s+(?:.*?\s)?\S+\s+\S+%\s+\S+\s*$", re.MULTILINE
    ),
)


def parse_incumbent(log: str) -> float | None:
    """The best incumbent objective the log mentions (values are not in the log:
    used only to say what a killed run had found)."""
    best: float | None = None
    for pat in _INCUMBENT_PATTERNS:
        for raw in pat.findall(log):
            v = _float(raw)
            if v is not None and math.isfinite(v) and abs(v) < _NO_SOLUTION:
                best = v if best is None else min(best, v)
    return best


def _mipstart_accepted(log: str) -> bool:
    """CBC turned the MIP start into an incumbent ("Cbc0045I MIPStart provided
    solution with cost X")."""
    return re.search(r"MIPStart provided solution", log, re.IGNORECASE) is not None


def _float(raw: str) -> float | None:
    raw = raw.strip().rstrip(",)%")
    if raw in ("1.#J", "inf", "+inf", "Infinity"):
        return math.inf
    if raw in ("-inf", "-Infinity"):
        return -math.inf
    try:
        return float(raw)
    except ValueError:
        return None
