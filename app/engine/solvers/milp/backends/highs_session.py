"""One HiGHS worker process for the stages of an exact polish (parent side).

`HighsSession()` starts `python -m app.engine.solvers.milp.backends.highs_worker`
at once, so highspy's import (~0.2 s) runs while the heuristic searches; `run`
hands it one array model (and a MIP start) and waits for the answer under a
hard deadline and a stop signal:

* at the deadline, or when `stop` is set, the child gets SIGTERM (HiGHS stops at
  its next callback and reports its incumbent), and SIGKILL `KILL_GRACE_S`
  later if it has not answered;
* after a kill the last incumbent the child wrote (`<out>.inc.npy`, see the
  worker) is read back: an incumbent HiGHS reported is never lost.

The child runs in its own process group and dies with the thread that started
it (`process._with_parent_death_signal`); `close` ends it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.solvers.milp.arrays import MilpArrays
from app.engine.solvers.milp.backends.process import (
    _with_parent_death_signal,
    python_child_env,
)
from app.engine.solvers.milp.backends.stage import (
    StageLimits,
    StageOutcome,
    StopSignal,
    stage_status,
)

POLL_S = 0.01
KILL_GRACE_S = 0.1  # SIGKILL this long after SIGTERM


def highs_available() -> bool:
    """highspy is an optional dependency."""
    try:
        return importlib.util.find_spec("highspy") is not None
    except (ImportError, ValueError):
        return False


class HighsSession:
    """A HiGHS worker process and its scratch directory."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="llm-allocator-polish-")
        self.dir = Path(self._tmp.name)
        self._log = open(self.dir / "worker.log", "wb")  # noqa: SIM115 (closed in close())
        cmd = [sys.executable, "-m", "app.engine.solvers.milp.backends.highs_worker"]
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            _with_parent_death_signal(cmd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=self.dir,
            env=python_child_env(),
            start_new_session=True,
        )
        self._buf = b""
        self._ready = False
        self._jobs = 0

    # ---- lines from the child ----------------------------------------------
    def _line(self, until: float, stop: StopSignal | None) -> str | None:
        """The child's next protocol line ("ready", "done"); None at `until`, on
        `stop`, or if it died."""
        while True:
            line = self._raw_line(until, stop)
            if line is None or line in ("ready", "done"):
                return line

    def _raw_line(self, until: float, stop: StopSignal | None) -> str | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            now = time.monotonic()
            if stop is not None and stop.is_set():
                return None
            ready, _, _ = select.select([fd], [], [], max(0.0, min(POLL_S, until - now)))
            if not ready and now >= until:
                return None
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return None  # the child exited
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def ready_now(self) -> bool:
        """Whether the worker has finished starting (never blocks)."""
        return self.wait_ready(time.monotonic())

    def wait_ready(self, until: float, stop: StopSignal | None = None) -> bool:
        if self._ready:
            return True
        if self.proc is None:
            return False
        self._ready = self._line(until, stop) == "ready"
        return self._ready

    # ---- a stage ---------------------------------------------------------------
    def run(self, ma: MilpArrays, start: np.ndarray | None, limits: StageLimits) -> StageOutcome:
        """Solve `ma` from `start` until it is solved or `limits` end it (the
        deadline, the stop signal). Over 80 lines: the protocol with the child
        (send, wait, stop, read back) is one sequence."""
        t0 = time.monotonic()
        deadline, stop = limits.deadline, limits.stop
        if not self.wait_ready(deadline, stop) or self.proc is None:
            stopped = stop is not None and stop.is_set()
            return StageOutcome(
                "stopped" if stopped else "limit", None, None, None, False, 0.0,
                message="the HiGHS worker was not ready",
            )  # fmt: skip
        self._jobs += 1
        out = self.dir / f"stage{self._jobs}"
        model = self.dir / f"stage{self._jobs}.npz"
        ma.to_npz(model)
        start_path = ""
        if start is not None:
            np.save(self.dir / f"stage{self._jobs}.start.npy", start)
            start_path = str(self.dir / f"stage{self._jobs}.start.npy")
        # HiGHS's own limit a little before the deadline: its answer arrives in time.
        limit = max(0.01, deadline - time.monotonic() - 0.03)
        job = {
            "model": str(model),
            "start": start_path,
            "out": str(out),
            "time_limit": limit,
            "gap": limits.gap,
            "threads": 1,
            "max_nodes": limits.max_nodes,
        }
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            return StageOutcome("error", None, None, None, False, 0.0, message="worker gone")
        line = self._line(deadline, stop)
        stopped = line is None and stop is not None and stop.is_set()
        killed = False
        if line is None:
            # Past the deadline or stopped: ask HiGHS to stop, then make sure.
            self._signal(signal.SIGTERM)
            line = self._line(time.monotonic() + KILL_GRACE_S, None)
            if line is None:
                self._kill()
                killed = True
            else:
                self._close_after_stop()
        return self._read(out, t0, stopped, killed)

    def _read(self, out: Path, t0: float, stopped: bool, killed: bool) -> StageOutcome:
        wall = time.monotonic() - t0
        res = Path(f"{out}.json")
        if not killed and res.exists():
            doc = json.loads(res.read_text())
            status = stage_status(str(doc.get("status")), bool(doc.get("interrupted")))
            if stopped:
                status = "stopped"
            elif status == "stopped":
                status = "limit"  # our SIGTERM at the deadline, not the caller's stop
            vals_path = Path(f"{out}.npy")
            values = np.load(vals_path) if doc.get("has_solution") and vals_path.exists() else None
            return StageOutcome(
                status, values, doc.get("objective") if values is not None else None,
                doc.get("bound"), bool(doc.get("mipstart_used")), wall,
                message=str(doc.get("message", doc.get("status"))), raw=str(doc.get("status")),
            )  # fmt: skip
        # Killed: the last incumbent the worker wrote, if any.
        inc = _read_incumbent(out)
        status = "stopped" if stopped else "limit"
        if inc is None:
            return StageOutcome(
                status, None, None, None, False, wall,
                message="HiGHS was killed before it reported a solution",
            )  # fmt: skip
        values, doc = inc
        return StageOutcome(
            status, values, doc.get("objective"), doc.get("bound"), False, wall,
            recovered=True, message="HiGHS was killed; its last incumbent was read back",
        )  # fmt: skip

    # ---- process control -----------------------------------------------------------
    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def _kill(self) -> None:
        if self.proc is not None:
            self._signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1.0)
            self.proc = None

    def _close_after_stop(self) -> None:
        """A stopped worker exits after its answer: reap it."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
            self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            self._kill()
        self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> HighsSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _read_incumbent(out: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    npy, js = Path(f"{out}.inc.npy"), Path(f"{out}.inc.json")
    if not npy.exists():
        return None
    try:
        values = np.load(npy)
        doc = json.loads(js.read_text()) if js.exists() else {}
    except (OSError, ValueError):
        return None
    return values, doc
