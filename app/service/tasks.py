"""The background tasks the service's parts own (the reconcile loop, the sources
poll loop): how one is stopped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("llm_allocator.service")

CANCEL_RETRY_S = 1.0  # a task still running this long after a cancel gets another


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (None: nothing to stop) and wait until it has ended.

    A cancel can be lost: on Python 3.11 `asyncio.wait_for` returns the result
    instead of raising when the cancel arrives as its awaitable finishes, and the
    task carries on (CI run 15 froze at shutdown that way). So the cancel is
    repeated until the task ends. `asyncio.wait` neither cancels the task nor
    swallows a cancel of the caller. A task that failed is logged, not raised:
    stopping one part must not stop the shutdown of the others."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_RETRY_S)
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s had failed", task.get_name(), exc_info=task.exception())
