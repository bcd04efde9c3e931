"""One claim statement for all of a process's idle workers (vision's and translate's realtime
workers).

Each worker used to claim for itself: one statement per row at least, plus an empty claim for
every worker woken while another took the row. Here idle workers wait in :meth:`Claimer.take`
and one task claims as many rows as workers wait, in one statement, and hands them out. The
rows of one claim share a lease owner, ``<process owner>:<claim number>``, unique per claim, so
a row reclaimed after its lease expired has another owner than the worker that lost it; a worker
finishes with its row's ``lease_owner``. :meth:`Claimer.run` gives back, on its way out, every
row a claim of this process still holds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg

from gen_common import jobs
from gen_common.db import DB_TROUBLE
from gen_common.wakeup import Wakeup

log = logging.getLogger(__name__)

Item = TypeVar("Item")  # what one worker takes: a leased row, or several handled together


def one_row(_: object) -> int:
    return 1


class Claimer(Generic[Item]):
    def __init__(
        self,
        pool: asyncpg.Pool,
        table: str,
        claim: Callable[[int, str], Awaitable[Sequence[Item]]],
        *,
        owner: str,
        wakeup: Wakeup,
        idle_poll_s: float,
        pause_s: Callable[[], float] = lambda: 0.0,
        rows_of: Callable[[Item], int] = one_row,
    ) -> None:
        """``claim(limit, owner)``: the statement that leases up to ``limit`` rows to
        ``owner``, as the items workers take (each a row, unless ``rows_of`` counts an item's
        rows: rows handled together). ``pause_s``: how long to hold claims back now (0: claim),
        e.g. while a circuit breaker refuses calls, so an outage leaves the work queued."""
        self._pool, self._table, self._claim = pool, jobs.table_name(table), claim
        self._owner, self._wakeup, self._idle_poll_s = owner, wakeup, idle_poll_s
        self._pause_s, self._rows_of = pause_s, rows_of
        self._numbers = itertools.count(1)
        self._waiting: collections.deque[asyncio.Future[Item]] = collections.deque()
        self._idle = asyncio.Event()

    def reserve(self) -> Reservation[Item]:
        """The workers waiting now, for rows an intake leases as it writes them (one statement
        fewer, and no NOTIFY to wait for): taken out of the queue, so no claim counts on them,
        until :meth:`Reservation.hand` (or leaving the ``with`` block) serves them or puts them
        back. None are reserved while claims are paused."""
        return self._reserve(None if self._pause_s() <= 0 else 0)

    def _reserve(self, most: int | None) -> Reservation[Item]:
        """Up to ``most`` (None: all) waiting workers, out of the queue, for one lease owner."""
        waiters: list[asyncio.Future[Item]] = []
        while self._waiting and (most is None or len(waiters) < most):
            if not (waiter := self._waiting.popleft()).done():
                waiters.append(waiter)
        return Reservation(self, f"{self._owner}:{next(self._numbers)}", waiters)

    def _put_back(self, waiters: list[asyncio.Future[Item]]) -> None:
        self._waiting.extendleft(reversed(waiters))
        if waiters:
            self._idle.set()

    async def take(self) -> Item:
        """The next item this worker leases (its rows' lease owner is their ``lease_owner``)."""
        waiter: asyncio.Future[Item] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._idle.set()
        return await waiter  # cancelled while waiting: run() skips the done future

    async def serve(self, workers: int, handle: Callable[[Item], Awaitable[None]]) -> None:
        """Claim, and run ``workers`` workers that each ``handle`` the items they take, until
        cancelled. A worker whose handling lost PostgreSQL pauses for the poll interval; the
        row's lease expires and the reaper requeues it, so nothing is lost."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.run())
            for _ in range(workers):
                tasks.create_task(self._work(handle))

    async def _work(self, handle: Callable[[Item], Awaitable[None]]) -> None:
        while True:
            item = await self.take()
            try:
                await handle(item)
            except DB_TROUBLE as exc:
                log.warning("database unavailable; worker pauses", extra={"error": repr(exc)})
                await asyncio.sleep(self._idle_poll_s)

    async def run(self) -> None:
        """Claim for the waiting workers until cancelled; then release what claims still hold."""
        try:
            while True:
                await self._pass()
        finally:
            with contextlib.suppress(*DB_TROUBLE, asyncpg.PostgresError):
                async with self._pool.acquire() as conn:
                    await jobs.release(conn, self._table, owner=f"{self._owner}:", prefix=True)

    async def _pass(self) -> None:
        while not self._live():
            self._idle.clear()
            await self._idle.wait()
        if (pause := self._pause_s()) > 0:
            await asyncio.sleep(min(pause, self._idle_poll_s))
            return
        seen = self._wakeup.generation  # a NOTIFY during the claim still counts
        # A power of two, so a claim is one of a few statements (each LIMIT is its own plan
        # cache entry: any count would mean a fresh plan for most claims); the workers still
        # waiting after a full claim are served by the next one, at once.
        wanted = 1 << (self._live().bit_length() - 1)
        # The workers it claims for are set aside first: an intake reserving workers meanwhile
        # cannot take one this claim's rows were meant for.
        with self._reserve(wanted) as reserved:
            try:
                items = await self._claim(wanted, reserved.owner)
            except DB_TROUBLE as exc:  # held rows' leases expire and the reaper requeues them
                log.warning("claim failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(self._idle_poll_s)
                return
            reserved.hand(items)
        if sum(map(self._rows_of, items)) < wanted:
            # the queue is empty: wait for new work (NOTIFY) or the poll
            await self._wakeup.wait(seen, self._idle_poll_s)

    def _live(self) -> int:
        while self._waiting and self._waiting[0].done():
            self._waiting.popleft()
        return sum(not w.done() for w in self._waiting)


@dataclass(frozen=True, slots=True)
class Lease:
    """What an intake statement leases its rows with (as jobs.claim would): at most ``slots``
    lots, to ``owner``, for ``lease_s``."""

    owner: str
    lease_s: float
    slots: int

    @staticmethod
    def pick(lease: Lease | None, eligible: Sequence[bool]) -> set[int]:
        """Which lots to lease: the first ``slots`` eligible ones, by position (none without a
        lease)."""
        chosen = [i for i, ok in enumerate(eligible) if ok]
        return set(chosen[: lease.slots if lease else 0])


class Reservation(Generic[Item]):
    """Waiting workers set aside by :meth:`Claimer.reserve`: ``slots`` of them, for rows leased
    to ``owner``."""

    def __init__(self, claimer: Claimer[Item], owner: str, waiters: list[asyncio.Future[Item]]):
        self._claimer, self.owner, self._waiters = claimer, owner, waiters

    @property
    def slots(self) -> int:
        return len(self._waiters)

    def lease(self, lease_s: float) -> Lease:
        return Lease(self.owner, lease_s, self.slots)

    def hand(self, items: Sequence[Item]) -> None:
        """Give the leased items (at most ``slots``; call after their lease committed) to the
        reserved workers; the rest of them go back to waiting."""
        assert len(items) <= len(self._waiters)
        for item in items:
            waiter = self._waiters.pop(0)
            if not waiter.done():  # else gone (shutdown): run()'s release frees the row
                waiter.set_result(item)
        self.close()

    def close(self) -> None:
        self._claimer._put_back(self._waiters)
        self._waiters = []

    def __enter__(self) -> Reservation[Item]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
