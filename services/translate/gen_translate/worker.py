"""Workers: translate one leased (lot, language), store the outcome; plus the lease reaper.

One claimer leases rows for every idle worker (:mod:`gen_common.claimer`), and commits the lease
before the calls, so a slow call holds no lock. While the circuit breaker is open nothing is
claimed (the work waits, queued). The claim is the call's one statement that checks and
records: it leases the rows and, in the same round trip, returns each lot's text and whether the
lot or its job was cancelled (no call then). Only a call that then had to wait for its
throttle slot checks again (``store.still_wanted``), as a cancel may have landed meanwhile. Sync
lots carry a deadline: a language that cannot finish inside it is recorded as ``time_limit``
(never English text); the reaper also expires queued rows past their deadline. What an attempt
comes to (stored outcome or requeue) is :mod:`gen_translate.outcome`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg
from gen_common import jobs, logs
from gen_common.breaker import Breaker, outcome_of
from gen_common.claimer import Claimer
from gen_common.db import DB_TROUBLE
from gen_common.errors import PermanentError, RetryableError
from gen_common.wakeup import Wakeup

from gen_translate import finish, outcome, store
from gen_translate.describe import Describer
from gen_translate.results import Outcome
from gen_translate.settings import TranslateOptions
from gen_translate.store import WORK

log = logging.getLogger(__name__)


class CallNotWanted(PermanentError):
    """The lot or its job was cancelled while the call waited for its throttle slot (or the lease
    was lost): no call."""

    code = "cancelled"


@dataclass(frozen=True, slots=True)
class WorkerDeps:
    pool: asyncpg.Pool
    describer: Describer
    options: TranslateOptions
    breaker: Breaker
    wake: Wakeup
    owner: str
    claim_where: str = "TRUE"  # SQL over translate_work: the rows the realtime path takes


async def run_workers(deps: WorkerDeps) -> None:
    """``options.workers`` workers and the claimer that leases rows for them (one statement for
    every idle worker, :mod:`gen_common.claimer`), until cancelled. A half-open breaker's probe
    permits are taken per row before the claim; rows not found give theirs back."""
    o = deps.options

    async def claim(limit: int, owner: str) -> list[asyncpg.Record]:
        permits = 0
        while permits < limit and deps.breaker.allow():
            permits += 1
        rows: list[asyncpg.Record] = []
        try:
            if permits:
                async with deps.pool.acquire() as conn:
                    rows = await jobs.claim(
                        conn,
                        WORK,
                        owner=owner,
                        lease_s=o.lease_s,
                        limit=permits,
                        where=deps.claim_where,
                        select=store.CLAIM_WITH_SOURCE,  # the lot's text and cancel state too
                    )
        finally:
            for _ in range(permits - len(rows)):
                deps.breaker.record_ignored()  # a half-open permit no row took
        return rows

    def pause_s() -> float:  # open: claim nothing until probes are allowed
        if deps.breaker.available():
            return 0.0
        return deps.breaker.open_for() or o.idle_poll_s / 10

    claimer = Claimer(
        deps.pool,
        WORK,
        claim,
        owner=deps.owner,
        wakeup=deps.wake,
        idle_poll_s=o.idle_poll_s,
        pause_s=pause_s,
    )

    async def handle(row: asyncpg.Record) -> None:
        try:
            await translate_one(deps, row["lease_owner"], row, row if row["has_source"] else None)
        except DB_TROUBLE:
            deps.breaker.record_ignored()  # the permit of a call that may not have started
            raise

    await claimer.serve(o.workers, handle)


async def translate_one(
    deps: WorkerDeps, owner: str, row: asyncpg.Record, source: asyncpg.Record | None
) -> None:
    """Translate one claimed (lot, language) of ``source`` and store what came of it."""
    job_id, lot_seq, language = row["job_id"], row["lot_seq"], row["language"]
    logs.bind_lot(job_id=job_id, lot_seq=lot_seq)  # translate_work rows hold no lot_id
    logs.bind(language=language)
    remaining = outcome.remaining_s(row["deadline_at"])
    if source is None or source["cancelled"] or (remaining is not None and remaining <= 0):
        deps.breaker.record_ignored()
        if source is None or source["cancelled"]:
            async with deps.pool.acquire() as conn:
                await jobs.fail(conn, WORK, job_id=row["id"], owner=owner, error="cancelled")
            return
        await outcome.save(deps.pool, row["id"], owner, outcome.time_limit(row), claimed=source)
        return

    async def after_wait() -> None:  # the claim's cancel check is stale after a throttle wait
        async with deps.pool.acquire() as conn:
            if not await store.still_wanted(
                conn, work_id=row["id"], owner=owner, lease_s=deps.options.lease_s
            ):
                raise CallNotWanted("lot or job cancelled while the call waited")

    started = time.monotonic()
    error: BaseException | None = None
    try:
        async with asyncio.timeout(remaining):
            translation = await deps.describer.translate(
                text=source["description_en"],
                language=language,
                metadata={
                    "job_id": str(job_id),
                    "lot_seq": str(lot_seq),
                    "target_language": language,
                },
                # the SDK's own timeout a little later: the budget's cut-off is not an upstream
                # failure, so it must not reach the breaker or the throttle as one
                timeout_s=None if remaining is None else remaining + 1.0,
                after_wait=after_wait,
            )
    except CallNotWanted:
        deps.breaker.record_ignored()
        async with deps.pool.acquire() as conn:
            await jobs.fail(conn, WORK, job_id=row["id"], owner=owner, error="cancelled")
        log.info("lot cancelled before its model call", extra={"work": row["id"]})
        return
    except (TimeoutError, RetryableError, PermanentError) as exc:
        error = exc
    deps.breaker.record(outcome_of(error), time.monotonic() - started)
    if error is None:
        result = Outcome(
            job_id,
            lot_seq,
            language,
            "translated",
            text=translation.text,
            model=translation.model,
            response_id=translation.response_id,
            usage=translation.usage,
        )
    elif isinstance(error, TimeoutError):
        result = outcome.time_limit(row)  # the sync budget ran out during the call
    elif isinstance(error, RetryableError):
        retried = await outcome.retry(deps.pool, deps.options, owner, row, error)
        if retried is None:
            return
        result = retried
    else:
        log.warning("translation failed permanently", extra={"error": repr(error)})
        result = outcome.failed(row, error)
    await outcome.save(deps.pool, row["id"], owner, result, claimed=source)


async def run_reaper(pool: asyncpg.Pool, interval_s: float) -> None:
    """Requeue rows of dead workers; record sync work whose budget ran out while queued."""
    while True:
        try:
            async with pool.acquire() as conn, conn.transaction():
                await jobs.reap(conn, WORK)
                for row in await store.expire_overdue(conn):
                    await finish.record_outcome(conn, outcome.time_limit(row))
        except DB_TROUBLE as exc:
            log.warning("reaper pass failed", extra={"error": repr(exc)})
        await asyncio.sleep(interval_s)
