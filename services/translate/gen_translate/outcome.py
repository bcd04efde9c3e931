"""What one attempt at a (lot, language) comes to: a stored outcome, or the row requeued.

The outcome is stored only if this worker still holds the lease (``results.settle``: the owner
check and the result row in one statement), so a reclaimed row is stored once. A 429 requeues the
row without spending an attempt; other retryable errors spend one, ``max_attempts`` of them make
it fail; a retry that cannot start before a sync lot's deadline records ``time_limit``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from gen_common import jobs, llm
from gen_common.errors import RateLimited, RetryableError
from gen_common.outbox_handoff import Handoff

from gen_translate import finish, results, store
from gen_translate.results import Outcome
from gen_translate.settings import TranslateOptions

log = logging.getLogger(__name__)


def remaining_s(deadline: datetime | None) -> float | None:
    if deadline is None:
        return None
    return (deadline - datetime.now(UTC)).total_seconds()


def time_limit(row: asyncpg.Record) -> Outcome:
    return Outcome(
        row["job_id"], row["lot_seq"], row["language"], "time_limit", error_code=finish.TIME_LIMIT
    )


def failed(row: asyncpg.Record, error: BaseException) -> Outcome:
    code = getattr(error, "code", "error")
    return Outcome(row["job_id"], row["lot_seq"], row["language"], "failed", error_code=code)


async def retry(
    pool: asyncpg.Pool,
    opts: TranslateOptions,
    owner: str,
    row: asyncpg.Record,
    error: RetryableError,
) -> Outcome | None:
    """Requeue the row for a later try (None), or the outcome when retrying cannot help."""
    delay = llm.retry_delay(
        error, max(row["attempts"], 1), base_s=opts.retry_base_s, cap_s=opts.retry_max_s
    )
    remaining = remaining_s(row["deadline_at"])
    if remaining is not None and remaining <= delay:
        return time_limit(row)
    rate_limited = isinstance(error, RateLimited)
    if not rate_limited and row["attempts"] >= opts.max_attempts:
        log.warning("translation retries exhausted", extra={"error": repr(error)})
        return failed(row, error)
    log.info("translation will be retried", extra={"error": repr(error), "delay_s": delay})
    async with pool.acquire() as conn:
        if rate_limited:  # a rate signal, not a failure of this row: no attempt spent
            await store.requeue_uncounted(conn, work_id=row["id"], owner=owner, delay_s=delay)
        else:
            await jobs.retry_later(
                conn, store.WORK, job_id=row["id"], owner=owner, delay_s=delay, error=repr(error)
            )
    return None


async def save(
    pool: asyncpg.Pool,
    owner: str,
    claimed: Sequence[asyncpg.Record],
    outcomes: Sequence[Outcome],
    handoff: Handoff | None = None,
) -> None:
    """Store the outcomes of claimed rows (``claimed[i]``: the work row of ``outcomes[i]`` as
    claimed, store.CLAIM_WITH_SOURCE) where ``owner`` still holds them; emit LotTranslated when
    they finish their lot. When they are for every language of one lot, results and completion
    are one statement; else each is settled in its own transaction."""
    async with pool.acquire() as conn:
        if claimed and finish.covers_lot(claimed[0], outcomes):
            await finish.settle_lot(
                conn, owner=owner, claimed=claimed, outcomes=outcomes, handoff=handoff
            )
            return
        for row, result in zip(claimed, outcomes, strict=True):
            async with conn.transaction():
                # the owner check, the result row and the lot's lock in one statement
                # (results.settle); if the lease expired another worker owns the row now and
                # nothing was written
                if lot := await results.settle(conn, work_id=row["id"], owner=owner, o=result):
                    await finish.complete_if_done(conn, result.job_id, result.lot_seq, locked=lot)
