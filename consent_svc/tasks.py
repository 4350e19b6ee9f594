"""Background loops of a worker, and stopping background tasks for sure."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

log = logging.getLogger("consent_svc.tasks")

# How long a cancelled task may take to finish its cleanup before it is cancelled again.
RECANCEL_SECONDS = 2.0


async def cancel(*tasks: asyncio.Task) -> None:
    """Cancel the tasks and wait until each has ended, whatever it raised. One that is still running after
    RECANCEL_SECONDS is cancelled again: on Python 3.11 a cancellation can be swallowed (as a timeout fires, or
    as an awaited future completes), and a plain cancel-then-gather then waits forever (seen: an app's shutdown
    in the test suite hung after a test's receivers closed)."""
    pending = {task for task in tasks if not task.done()}
    rounds = 0
    while pending:
        for task in pending:
            task.cancel()
        rounds += 1
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
        if pending:
            log.warning("%d background task(s) still running after a cancel; cancelling again", len(pending))
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved


class Background:
    """A worker's long-running loop (`_run`) on the pool the app's lifespan opens: started once, stopped for
    sure (subclasses that must finish something at stop extend `stop`)."""

    pool: asyncpg.Pool | None = None
    _task: asyncio.Task | None = None

    def start(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel(self._task)

    async def _run(self) -> None:
        raise NotImplementedError
