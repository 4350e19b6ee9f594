"""Group commit: calls that arrive while a round trip is under way wait for the next one, and share it.

A call joins only a round trip that has not started, so whatever the round trip reads was committed before
the call began (a withdrawal answered before a check began is always seen). Knows nothing of checks: the
round trip is a function of the gathered items that answers each one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")

# Two round trips in flight per worker: one reading or writing while the next one's calls gather.
MAX_IN_FLIGHT = 2


class GroupCommit(Generic[Item, Answer]):
    """`round_trip(items)` answers every item, in order, with its answer or an exception to raise to its caller;
    if it raises, every caller of that round trip gets the exception."""

    def __init__(self, round_trip: Callable[[list[Item]], Awaitable[list[Answer | Exception]]]) -> None:
        self._round_trip = round_trip
        self._pending: list[tuple[Item, asyncio.Future]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, item: Item) -> Answer:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        # call_soon: calls whose requests were parsed in the same turn of the loop share the round trip.
        if not self._scheduled and self._in_flight < MAX_IN_FLIGHT:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if not self._pending or self._in_flight >= MAX_IN_FLIGHT:
            return
        gathered, self._pending = self._pending, []
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(gathered))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, gathered: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            answers = await self._round_trip([item for item, _ in gathered])
        except BaseException as exc:
            for _, future in gathered:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), answer in zip(gathered, answers, strict=True):
                if future.done():  # the caller went away; what the round trip did for it stands
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
        finally:
            self._in_flight -= 1
            if self._pending:
                self._schedule()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
