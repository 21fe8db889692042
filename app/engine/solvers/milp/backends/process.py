"""A solver subprocess under a hard wall-clock limit and a cancel event, shared by
the CBC and HiGHS backends.

The solver is never trusted to stop on its own. `run_process` starts it in its
own process group (`start_new_session=True`), polls every `POLL_S` seconds, on
`cancel` kills the group at once (SIGKILL), at `hard_deadline − INTERRUPT_WAIT_S`
sends SIGINT (CBC's "stop and report the incumbent" path) and at `hard_deadline`
SIGKILL, whatever the solver is doing. On Linux the solver also dies with the
thread that started it (PR_SET_PDEATHSIG), so a hard-killed caller never leaves
an orphan.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class CancelSignal(Protocol):
    """Anything with `is_set()`: a threading.Event, the service's "a newer
    generation is waiting" flag, AGH's stop signal."""

    def is_set(self) -> bool: ...


POLL_S = 0.05
GRACE_S = 1.5  # hard kill this long after the time limit
INTERRUPT_WAIT_S = 0.75  # SIGINT this long before the hard kill
CANCEL_WAIT_S = 0.3  # on cancel: SIGINT, and SIGKILL this long after


@dataclass(frozen=True)
class ProcessRun:
    """How a supervised subprocess ended."""

    returncode: int | None
    wall_s: float
    cancelled: bool  # killed because `cancel` was set
    killed_on_deadline: bool  # interrupted/killed past the hard deadline
    pid: int


def python_child_env() -> dict[str, str]:
    """The environment for a `python -m app.…` solver child: this process's, with
    the directory holding `app` first on PYTHONPATH (the child imports the same
    code as its parent)."""
    root = str(Path(__file__).resolve().parents[5])  # the directory holding `app`
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        # Already gone (or the group leader exited): fall back to the process itself.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


# Run in front of the solver on Linux: the solver gets SIGKILL when the thread
# that started it dies (PR_SET_PDEATHSIG), so a hard-killed caller (e.g. the
# service's audit process) never leaves an orphaned solver running in its own
# session. Checks the parent is still the one that started it (no race), then
# execs the solver in place (same pid).
_PDEATHSIG_SHIM = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv[1]): os._exit(70)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _with_parent_death_signal(cmd: Sequence[str]) -> list[str]:
    if not sys.platform.startswith("linux"):
        return list(cmd)
    return [sys.executable, "-I", "-S", "-c", _PDEATHSIG_SHIM, str(os.getpid()), *cmd]


def run_process(
    cmd: Sequence[str],
    log_path: Path,
    hard_deadline: float,
    cancel: CancelSignal | None = None,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    interrupt_wait_s: float = INTERRUPT_WAIT_S,
    cancel_wait_s: float = CANCEL_WAIT_S,
) -> ProcessRun:
    """Run `cmd` (stdout+stderr to `log_path`) in its own process group until it
    exits, `cancel` is set or the monotonic `hard_deadline` passes. Both stop it
    politely first and for sure next: on `cancel`, SIGINT at once and SIGKILL
    `cancel_wait_s` later; before the deadline, SIGINT `interrupt_wait_s` ahead
    of it and SIGKILL at it. SIGINT is CBC's "stop and write the incumbent" path
    (and the HiGHS child's interrupt): a solver that takes it in time keeps its
    incumbent. Never leaves the process (group) behind, and on Linux the process
    dies with the thread that started it even if this one is killed outright."""
    t0 = time.monotonic()
    interrupt_at = hard_deadline - interrupt_wait_s
    kill_at = math.inf
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _with_parent_death_signal(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,  # own process group: killpg reaches any children
        )
        if on_start is not None:
            on_start(proc)
        cancelled = deadline_hit = interrupted = False
        try:
            while True:
                try:
                    proc.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if not cancelled and cancel is not None and cancel.is_set():
                    cancelled = True
                    _kill_group(proc, signal.SIGINT)
                    kill_at = now + cancel_wait_s
                if now >= min(hard_deadline, kill_at):
                    deadline_hit = deadline_hit or not cancelled
                    _kill_group(proc, signal.SIGKILL)
                    proc.wait()
                    break
                if not interrupted and not cancelled and now >= interrupt_at:
                    deadline_hit = interrupted = True
                    _kill_group(proc, signal.SIGINT)
        finally:
            if proc.poll() is None:  # an exception (e.g. KeyboardInterrupt) in the loop
                _kill_group(proc, signal.SIGKILL)
                proc.wait()
            if cancelled or deadline_hit:
                # The leader may have taken SIGINT and gone while others in its
                # group (a shell's background job ignores SIGINT) live on.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
    return ProcessRun(proc.returncode, time.monotonic() - t0, cancelled, deadline_hit, proc.pid)
