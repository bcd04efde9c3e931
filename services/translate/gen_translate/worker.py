"""Workers: translate leased (lot, language) rows, store the outcomes; plus the lease reaper.

One claimer leases rows for every idle worker (:mod:`gen_common.claimer`), and commits the lease
before the calls, so a slow call holds no lock. While the circuit breaker is open nothing is
claimed (the work waits, queued). The claim is the call's one statement that checks and
records: it leases the rows and, in the same round trip, returns each lot's text and whether the
lot or its job was cancelled (no call then). Only a call that then had to wait for its
throttle slot checks again (``store.still_wanted``), as a cancel may have landed meanwhile. Sync
lots carry a deadline: a language that cannot finish inside it is recorded as ``time_limit``
(never English text); the reaper also expires queued rows past their deadline. What an attempt
comes to (stored outcome or requeue) is :mod:`gen_translate.outcome`. A claim that leased every
language of a lot hands them to one worker: their calls run concurrently and their outcomes are
stored, and the lot completed, in one statement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from gen_common import jobs, logs
from gen_common.breaker import Breaker, outcome_of
from gen_common.claimer import Claimer
from gen_common.db import DB_TROUBLE
from gen_common.errors import PermanentError, RetryableError
from gen_common.outbox_handoff import Handoff
from gen_common.wakeup import Wakeup

from gen_translate import finish, outcome, store, work_items
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
    handoff: Handoff | None = None  # publishes LotTranslated right after the commit, else relay


def claimer_of(deps: WorkerDeps) -> Claimer[list[asyncpg.Record]]:
    """The claimer that leases rows for the workers (one statement for every idle worker,
    :mod:`gen_common.claimer`); the consumer hands it sync lots it leased itself. A half-open
    breaker's probe permits are taken per row before the claim; rows not found give theirs
    back."""
    o = deps.options

    async def claim(limit: int, owner: str) -> list[list[asyncpg.Record]]:
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
        return work_items.by_lot(rows)

    def pause_s() -> float:  # open: claim nothing until probes are allowed
        if deps.breaker.available():
            return 0.0
        return deps.breaker.open_for() or o.idle_poll_s / 10

    return Claimer(
        deps.pool,
        WORK,
        claim,
        owner=deps.owner,
        wakeup=deps.wake,
        idle_poll_s=o.idle_poll_s,
        pause_s=pause_s,
        rows_of=len,
    )


async def run_workers(deps: WorkerDeps, claimer: Claimer[list[asyncpg.Record]]) -> None:
    """``options.workers`` workers and their claimer, until cancelled."""
    await claimer.serve(deps.options.workers, lambda rows: translate_rows(deps, rows))


async def translate_rows(deps: WorkerDeps, rows: Sequence[asyncpg.Record]) -> None:
    """Translate claimed rows concurrently (one, or all languages of a lot) and store their
    outcomes together; a row requeued or cancelled stores nothing."""
    owner = rows[0]["lease_owner"]
    attempts = await asyncio.gather(
        *(attempt(deps, owner, row) for row in rows), return_exceptions=True
    )
    done = [(row, a) for row, a in zip(rows, attempts, strict=True) if isinstance(a, Outcome)]
    if done:
        claimed, outcomes = [row for row, _ in done], [a for _, a in done]
        await outcome.save(deps.pool, owner, claimed, outcomes, deps.handoff)
    for failure in attempts:
        if isinstance(failure, BaseException):
            raise failure


async def attempt(deps: WorkerDeps, owner: str, row: asyncpg.Record) -> Outcome | None:
    """What one claimed (lot, language) comes to: the outcome to store, or None when the row
    needs none (requeued for a retry, or cancelled)."""
    try:
        return await _attempt(deps, owner, row)
    except DB_TROUBLE:
        deps.breaker.record_ignored()  # the permit of a call that may not have started
        raise


async def _attempt(deps: WorkerDeps, owner: str, row: asyncpg.Record) -> Outcome | None:
    job_id, lot_seq, language = row["job_id"], row["lot_seq"], row["language"]
    logs.bind_lot(job_id=job_id, lot_seq=lot_seq)  # translate_work rows hold no lot_id
    logs.bind(language=language)
    remaining = outcome.remaining_s(row["deadline_at"])
    if not row["has_source"] or row["cancelled"] or (remaining is not None and remaining <= 0):
        deps.breaker.record_ignored()
        if row["has_source"] and not row["cancelled"]:
            return outcome.time_limit(row)
        async with deps.pool.acquire() as conn:
            await jobs.fail(conn, WORK, job_id=row["id"], owner=owner, error="cancelled")
        return None

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
                text=row["description_en"],
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
        return None
    except (TimeoutError, RetryableError, PermanentError) as exc:
        error = exc
    deps.breaker.record(outcome_of(error), time.monotonic() - started)
    if error is None:
        return Outcome(
            job_id,
            lot_seq,
            language,
            "translated",
            text=translation.text,
            model=translation.model,
            response_id=translation.response_id,
            usage=translation.usage,
        )
    if isinstance(error, TimeoutError):
        return outcome.time_limit(row)  # the sync budget ran out during the call
    if isinstance(error, RetryableError):
        return await outcome.retry(deps.pool, deps.options, owner, row, error)
    log.warning("translation failed permanently", extra={"error": repr(error)})
    return outcome.failed(row, error)


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
