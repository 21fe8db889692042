"""A process pool for solver work that survives its worker dying.

`concurrent.futures.ProcessPoolExecutor` cannot cancel a running task and breaks
for good when a worker dies. `SolverPool` adds what the service needs: a hard
wall-clock limit per task (past it the worker's process group, CBC included, is
killed and the pool rebuilt) and automatic recreation after a crash. Workers are
started with "spawn" (or "forkserver"): forking a process that runs an event loop
and threads is unsafe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.sharedctypes import Synchronized
from typing import Any, TypeVar

from app.service.worker import init_worker, warm_up

log = logging.getLogger("llm_allocator.service")

R = TypeVar("R")


class SolverCrashed(RuntimeError):
    """The worker process died (or was killed after its hard limit)."""


class SolverTimeout(SolverCrashed):
    """The task overran its hard wall-clock limit and its worker was killed."""


class SolverPool:
    def __init__(
        self,
        name: str,
        workers: int,
        start_method: str,
        lazy: bool = False,
        share_generation: bool = False,
    ) -> None:
        """`lazy`: start the workers on first use rather than in `start()` (what-if
        solves are rare; no need to hold a process for them from the start).
        `share_generation`: the workers see `announce(generation)` (a re-plan for an
        older generation then stops early)."""
        self.name = name
        self.workers = workers
        self.lazy = lazy
        self._ctx = multiprocessing.get_context(start_method)
        self._latest: Synchronized[int] | None = (
            self._ctx.Value("q", 0, lock=False) if share_generation else None
        )
        self._executor: ProcessPoolExecutor | None = None
        self._open = False
        self.restarts = 0

    def start(self) -> None:
        self._open = True
        if not self.lazy:
            self._spawn()

    def _spawn(self) -> None:
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._ctx,
            initializer=init_worker,
            initargs=(self._latest,),
        )
        # Start the workers now (imports take ~1 s) rather than on the first solve.
        for _ in range(self.workers):
            self._executor.submit(warm_up)

    def _kill_workers(self) -> None:
        ex = self._executor
        if ex is None:
            return
        # _processes is private but stable since 3.2; there is no public way to
        # stop a running task.
        procs = list((getattr(ex, "_processes", None) or {}).values())
        for p in procs:
            if p.pid is None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)  # worker + CBC (init_worker: setpgrp)
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                p.kill()

    def announce(self, generation: int) -> None:
        """Tell the workers the newest generation: a solve for an older one stops."""
        if self._latest is not None and generation > self._latest.value:
            self._latest.value = generation

    def restart(self) -> None:
        self._kill_workers()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self.restarts += 1
        self._spawn()

    def close(self) -> None:
        """Stop at once: a running solve is not worth waiting for at shutdown."""
        self._open = False
        self._kill_workers()
        if self._executor is not None:
            # The workers are dead: waiting only joins the executor's threads, so
            # its queues (POSIX semaphores) are released before the interpreter exits.
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def run(self, timeout_s: float, fn: Callable[..., R], *args: Any) -> R:
        """Run `fn(*args)` in a worker; raise SolverTimeout past `timeout_s`,
        SolverCrashed if the worker dies. The pool is usable again afterwards.

        If the caller is cancelled (client gone, shutdown) the task runs on to its
        own time budget: killing it would also kill other tasks sharing the pool."""
        if not self._open:
            raise SolverCrashed(f"{self.name} pool is not running")
        if self._executor is None:
            self._spawn()
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._executor, fn, *args)
        except BrokenProcessPool:
            self.restart()
            fut = loop.run_in_executor(self._executor, fn, *args)
        # Several tasks may see the same breakage: only the first rebuilds the pool.
        submitted_to = self._executor
        try:
            # Not asyncio.wait_for: on Python 3.11 it loses a cancel that arrives as
            # the task finishes (the caller then runs on; a shutdown froze so).
            done, _ = await asyncio.wait({fut}, timeout=timeout_s)
        except asyncio.CancelledError:
            fut.cancel()  # only the wrapper: the worker runs on to its own budget
            raise
        if not done:
            fut.cancel()
            log.error(
                "%s: task exceeded its hard limit of %.1f s; killing the worker",
                self.name,
                timeout_s,
            )
            if self._executor is submitted_to:
                self.restart()
            raise SolverTimeout(f"solver exceeded its hard limit of {timeout_s:.1f} s")
        try:
            return fut.result()
        except BrokenProcessPool as exc:
            log.error("%s: worker process died; recreating the pool", self.name)
            if self._executor is submitted_to:
                self.restart()
            raise SolverCrashed(f"solver process died ({exc or 'killed'})") from None
