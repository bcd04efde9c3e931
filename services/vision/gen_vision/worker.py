"""Realtime workers: check a leased lot's images, call the model, record the outcome.

One claimer leases lots for every idle worker (:mod:`gen_common.claimer`). Claims are held back
while the breaker refuses calls, so an outage leaves the work queued. The lease
is renewed while the lot is worked on; a crash lets it expire and the reaper requeues the row.
What a lot's attempt comes to (stored result, retry, failure, cancel) is written by
:mod:`gen_vision.outcome`, only while this worker still holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from gen_common import jobs, logs
from gen_common.breaker import Breaker
from gen_common.claimer import Claimer
from gen_common.db import DB_TROUBLE
from gen_common.errors import GenError
from gen_common.outbox_handoff import Handoff
from gen_common.wakeup import Wakeup

from gen_vision import outcome, store
from gen_vision.assess import Assessor, CallNotWanted
from gen_vision.images import ImageCheck, enforce_threshold
from gen_vision.lot_request import LotRequest
from gen_vision.settings import VisionOptions

log = logging.getLogger(__name__)
REALTIME = "path = 'realtime'"


class Checker(Protocol):
    async def check_lot(self, urls: list[str]) -> ImageCheck: ...


@dataclass(frozen=True, slots=True)
class Deps:
    pool: asyncpg.Pool
    assessor: Assessor
    checker: Checker
    breaker: Breaker
    options: VisionOptions
    wakeup: Wakeup
    simulated: bool = False  # OPENAI__SIMULATED: the assessment says it came from the simulator
    handoff: Handoff | None = None  # publishes LotAssessed right after the commit, else the relay


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Calls:
    """The call log of one work row: a vision_calls row before every model call."""

    def __init__(self, deps: Deps, work: asyncpg.Record, owner: str) -> None:
        self._deps, self._work, self._owner = deps, work, owner
        self.ok: tuple[int, str | None] | None = None  # the successful call, logged at store

    async def started(self, images: list[str]) -> int:
        async with self._deps.pool.acquire() as conn:
            call_id = await store.call_started(
                conn,
                self._work,
                owner=self._owner,
                model=self._deps.options.model,
                images=len(images),
            )
        if call_id is None:
            raise CallNotWanted("job or lot cancelled (or lease lost) before the model call")
        return call_id

    async def finished(self, call_id: int, outcome: str, response_id: str | None) -> None:
        if outcome == "ok":  # written by the transaction that stores the result (one trip less)
            self.ok = (call_id, response_id)
            return
        async with self._deps.pool.acquire() as conn:
            await store.call_finished(conn, call_id, outcome, response_id)


def claimer_of(deps: Deps) -> Claimer[asyncpg.Record]:
    """The claimer that leases rows for the workers (one statement for every idle worker,
    :mod:`gen_common.claimer`); the consumer hands it sync lots it leased itself."""
    o = deps.options

    async def claim(limit: int, owner: str) -> list[asyncpg.Record]:
        async with deps.pool.acquire() as conn:
            return await jobs.claim(
                conn, store.TABLE, owner=owner, lease_s=o.lease_s, limit=limit, where=REALTIME
            )

    def pause_s() -> float:  # while the breaker refuses calls the work stays queued
        return 0.0 if deps.breaker.available() else max(deps.breaker.open_for(), 0.05)

    return Claimer(
        deps.pool,
        store.TABLE,
        claim,
        owner=owner_name(),
        wakeup=deps.wakeup,
        idle_poll_s=o.idle_poll_s,
        pause_s=pause_s,
    )


async def run(deps: Deps, claimer: Claimer[asyncpg.Record]) -> None:
    """``options.workers`` workers and their claimer, until cancelled."""
    await claimer.serve(deps.options.workers, lambda row: process(deps, row, row["lease_owner"]))


async def _renew(deps: Deps, work_id: int, owner: str) -> None:
    lease = deps.options.lease_s
    while True:
        await asyncio.sleep(lease / 3)
        with contextlib.suppress(*DB_TROUBLE):
            async with deps.pool.acquire() as conn:
                if not await store.renew_lease(conn, work_id=work_id, owner=owner, lease_s=lease):
                    return


async def process(deps: Deps, work: asyncpg.Record, owner: str) -> None:
    logs.bind_lot(job_id=work["job_id"], lot_seq=work["lot_seq"], lot_id=work["lot_id"])
    renewer = asyncio.create_task(_renew(deps, work["id"], owner))
    lot: LotRequest | None = None
    try:
        lot = await _prepare(deps, work)
        calls = _Calls(deps, work, owner)
        result = await deps.assessor.assess(lot, calls)
    except GenError as error:
        await outcome.failed(deps.pool, deps.options, deps.breaker, work, owner, error, lot)
    else:
        await outcome.succeeded(
            deps.pool, work, owner, lot, result, calls.ok, deps.simulated, deps.handoff
        )
    finally:
        renewer.cancel()
        await asyncio.wait([renewer])  # unlike awaiting it, never swallows our own cancel


async def _prepare(deps: Deps, work: asyncpg.Record) -> LotRequest:
    urls = list(work["images"])
    refused = [u for u in work["refused_images"] if u in urls]
    check = await deps.checker.check_lot(urls)
    lot = LotRequest(
        job_id=str(work["job_id"]),
        lot_seq=work["lot_seq"],
        lot_id=work["lot_id"],
        all_images=urls,
        images=[u for u in check.valid if u not in refused],
        missing=check.missing,
        additional_info=work["additional_info"],
        refused=refused,
    )
    enforce_threshold(urls, lot.missing_images, deps.options.images.max_unreachable)
    return lot


async def reaper(pool: asyncpg.Pool, options: VisionOptions) -> None:
    """Requeue lots whose worker died (expired lease)."""
    while True:
        with contextlib.suppress(*DB_TROUBLE):
            async with pool.acquire() as conn:
                if n := await jobs.reap(conn, store.TABLE):
                    log.warning("requeued lots with expired leases", extra={"count": n})
        await asyncio.sleep(options.reap_interval_s)


async def listen(pool: asyncpg.Pool, wakeup: Wakeup) -> None:
    """Wake an idle worker when the consumer queues work (NOTIFY vision_work); a worker that
    claims a row wakes the next, so a burst ramps the workers up without a thundering herd."""
    conn = await pool.acquire()
    try:
        await conn.add_listener(store.CHANNEL, wakeup.notify)
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(*DB_TROUBLE):
            await conn.remove_listener(store.CHANNEL, wakeup.notify)
        await pool.release(conn)
