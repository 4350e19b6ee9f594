"""Background tasks are stopped for sure: a shutdown never waits forever on one."""

from __future__ import annotations

import asyncio

from consent_svc import tasks


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again_and_ends(monkeypatch, caplog):
    monkeypatch.setattr(tasks, "RECANCEL_SECONDS", 0.05)
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 1:
                    continue  # swallowed, as Python 3.11's asyncio can as a timeout fires
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(tasks.cancel(task), 5)
    assert task.cancelled() and cancels == 2
    assert "still running after a cancel" in caplog.text


async def test_what_a_cancelled_task_raises_does_not_stop_the_others_from_being_cancelled():
    async def failing_on_cancel() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    failing, plain = asyncio.create_task(failing_on_cancel()), asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    await tasks.cancel(failing, plain)
    assert isinstance(failing.exception(), RuntimeError) and plain.cancelled()
