"""Wake-ups on a NOTIFY of new work (the claimer of vision's and translate's realtime workers)."""

from __future__ import annotations

import asyncio
import collections
import contextlib


class Wakeup:
    """Wakes ONE waiter per NOTIFY (a process's :class:`gen_common.claimer.Claimer`, which then
    claims for every idle worker in one statement). A generation counter means no wake-up is
    missed: a waiter whose claim raced a notification claims again at once instead of
    sleeping."""

    def __init__(self) -> None:
        self.generation = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def notify(self, *_: object) -> None:
        self.generation += 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def wait(self, seen: int, timeout_s: float) -> None:
        if self.generation != seen:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout_s)
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
