"""Workers: claim one (lot, language), call the model, store the outcome; plus the lease reaper.

A claim is committed before the call, so a slow call holds no lock. While the circuit breaker is
open nothing is claimed (the work waits, queued). The outcome is stored only if this worker still
holds the lease (``jobs.finish``/``jobs.fail``), so a reclaimed row is stored once. Sync lots carry
a deadline: a language that cannot finish inside it is recorded as ``time_limit`` (never English
text); the reaper also expires queued rows past their deadline. A 429 requeues the row without
spending an attempt; other retryable errors spend one, ``max_attempts`` of them make it fail.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from gen_common import jobs, llm, logs
from gen_common.breaker import Breaker, outcome_of
from gen_common.db import DB_TROUBLE
from gen_common.errors import PermanentError, RateLimited, RetryableError

from gen_translate import finish, store
from gen_translate.describe import Describer
from gen_translate.settings import TranslateOptions
from gen_translate.store import WORK, Outcome

log = logging.getLogger(__name__)


class CallNotWanted(PermanentError):
    """The lot or its job was cancelled after the claim (or the lease was lost): no call."""

    code = "cancelled"


class Wakeup:
    """Wakes ONE idle worker per NOTIFY; a worker that then claims a row wakes the next one, so
    a burst of work ramps workers up as a chain instead of every idle worker running an empty
    claim on every notification (a thundering herd that cost ~15 empty claims per lot). A
    generation counter means no wake-up is missed: a worker whose claim raced a notification
    claims again at once instead of sleeping."""

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


@dataclass(frozen=True, slots=True)
class WorkerDeps:
    pool: asyncpg.Pool
    describer: Describer
    options: TranslateOptions
    breaker: Breaker
    wake: Wakeup
    owner: str
    claim_where: str = "TRUE"  # SQL over translate_work: the rows the realtime path takes


async def run_worker(deps: WorkerDeps, index: int) -> None:
    owner = f"{deps.owner}-{index}"
    try:
        while True:
            if not deps.breaker.allow():  # open: claim nothing until probes are allowed
                wait = deps.breaker.open_for() or deps.options.idle_poll_s / 10
                await asyncio.sleep(min(wait, deps.options.idle_poll_s))
                continue
            try:
                await _claim_and_translate(deps, owner)
            except DB_TROUBLE as exc:
                # PostgreSQL went away: a claimed row's lease expires and the reaper requeues it.
                deps.breaker.record_ignored()
                log.warning("worker pass failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(deps.options.idle_poll_s)
    finally:
        with contextlib.suppress(*DB_TROUBLE, asyncpg.PostgresError):
            async with deps.pool.acquire() as conn:
                await jobs.release(conn, WORK, owner=owner)


async def _claim_and_translate(deps: WorkerDeps, owner: str) -> None:
    seen = deps.wake.generation
    async with deps.pool.acquire() as conn:
        rows = await jobs.claim(
            conn,
            WORK,
            owner=owner,
            lease_s=deps.options.lease_s,
            where=deps.claim_where,
            select=store.CLAIM_WITH_SOURCE,  # the lot's text and cancel state in the same trip
        )
    if not rows:
        deps.breaker.record_ignored()  # give a half-open permit back
        await deps.wake.wait(seen, deps.options.idle_poll_s)
        return
    deps.wake.notify()  # there may be more: wake one more idle worker (the chain)
    row = rows[0]
    await translate_one(deps, owner, row, row if row["has_source"] else None)


def _remaining_s(deadline: datetime | None) -> float | None:
    if deadline is None:
        return None
    return (deadline - datetime.now(UTC)).total_seconds()


def _past(deadline: datetime | None, delay_s: float) -> bool:
    remaining = _remaining_s(deadline)
    return remaining is not None and remaining <= delay_s


async def translate_one(
    deps: WorkerDeps, owner: str, row: asyncpg.Record, source: asyncpg.Record | None
) -> None:
    """Translate one claimed (lot, language) of ``source`` and store what came of it."""
    job_id, lot_seq, language = row["job_id"], row["lot_seq"], row["language"]
    logs.bind_lot(job_id=job_id, lot_seq=lot_seq)  # translate_work rows hold no lot_id
    logs.bind(language=language)
    remaining = _remaining_s(row["deadline_at"])
    if source is None or source["cancelled"] or (remaining is not None and remaining <= 0):
        deps.breaker.record_ignored()
        if source is None or source["cancelled"]:
            async with deps.pool.acquire() as conn:
                await jobs.fail(conn, WORK, job_id=row["id"], owner=owner, error="cancelled")
            return
        await _store(deps.pool, row["id"], owner, _time_limit(row))
        return

    async def before_call() -> None:
        async with deps.pool.acquire() as conn:
            if not await store.still_wanted(
                conn, work_id=row["id"], owner=owner, lease_s=deps.options.lease_s
            ):
                raise CallNotWanted("lot or job cancelled before the model call")

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
                before_call=before_call,
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
        outcome = Outcome(
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
        outcome = _time_limit(row)  # the sync budget ran out during the call
    elif isinstance(error, RetryableError):
        retry_outcome = await _retry(deps, owner, row, error)
        if retry_outcome is None:
            return
        outcome = retry_outcome
    else:
        log.warning("translation failed permanently", extra={"error": repr(error)})
        outcome = _failed(row, error)
    await _store(deps.pool, row["id"], owner, outcome)


async def _retry(
    deps: WorkerDeps, owner: str, row: asyncpg.Record, error: RetryableError
) -> Outcome | None:
    """Requeue the row for a later try (None), or the outcome when retrying cannot help."""
    opts = deps.options
    delay = llm.retry_delay(
        error, max(row["attempts"], 1), base_s=opts.retry_base_s, cap_s=opts.retry_max_s
    )
    if _past(row["deadline_at"], delay):
        return _time_limit(row)
    rate_limited = isinstance(error, RateLimited)
    if not rate_limited and row["attempts"] >= opts.max_attempts:
        log.warning("translation retries exhausted", extra={"error": repr(error)})
        return _failed(row, error)
    log.info("translation will be retried", extra={"error": repr(error), "delay_s": delay})
    async with deps.pool.acquire() as conn:
        if rate_limited:  # a rate signal, not a failure of this row: no attempt spent
            await store.requeue_uncounted(conn, work_id=row["id"], owner=owner, delay_s=delay)
        else:
            await jobs.retry_later(
                conn, WORK, job_id=row["id"], owner=owner, delay_s=delay, error=repr(error)
            )
    return None


def _time_limit(row: asyncpg.Record) -> Outcome:
    return Outcome(
        row["job_id"], row["lot_seq"], row["language"], "time_limit", error_code=finish.TIME_LIMIT
    )


def _failed(row: asyncpg.Record, error: BaseException) -> Outcome:
    code = getattr(error, "code", "error")
    return Outcome(row["job_id"], row["lot_seq"], row["language"], "failed", error_code=code)


async def _store(pool: asyncpg.Pool, work_id: int, owner: str, outcome: Outcome) -> None:
    async with pool.acquire() as conn, conn.transaction():
        # the owner check and the result row in one statement (store.settle); if the lease
        # expired another worker owns the row now and nothing was written
        if await store.settle(conn, work_id=work_id, owner=owner, o=outcome):
            await finish.complete_if_done(conn, outcome.job_id, outcome.lot_seq)


async def run_reaper(pool: asyncpg.Pool, interval_s: float) -> None:
    """Requeue rows of dead workers; record sync work whose budget ran out while queued."""
    while True:
        try:
            async with pool.acquire() as conn, conn.transaction():
                await jobs.reap(conn, WORK)
                for row in await store.expire_overdue(conn):
                    await finish.record_outcome(conn, _time_limit(row))
        except DB_TROUBLE as exc:
            log.warning("reaper pass failed", extra={"error": repr(exc)})
        await asyncio.sleep(interval_s)
