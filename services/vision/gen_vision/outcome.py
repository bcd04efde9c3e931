"""What one attempt at a lot comes to, written in ONE transaction (a success: one statement) that
starts with the owner check (``results.finish_assessed`` / ``jobs.retry_later`` / ``jobs.fail``),
so a worker that lost its lease writes nothing.

Failure policy: 429 and breaker refusals requeue without using up an attempt; other retryable
errors back off (jittered exponential, ``llm.retry_delay``) until ``max_attempts``; invalid model
output is retried ``invalid_output_attempts`` times; unreachable images and other permanent
errors fail the lot at once. Failed lots emit LotFailed(stage="vision"); a lot cancelled before
its model call (:class:`CallNotWanted`) is cancelled without an event.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import asyncpg
from gen_common import jobs, llm, outbox
from gen_common.breaker import Breaker
from gen_common.errors import (
    BreakerOpen,
    GenError,
    InvalidModelOutput,
    PermanentError,
    RateLimited,
)
from gen_common.outbox_handoff import Handoff

from gen_vision import handler, results, store
from gen_vision.assess import CallNotWanted
from gen_vision.images import ImagesUnreachable
from gen_vision.lot_request import LotRequest, ModelResult
from gen_vision.settings import VisionOptions

log = logging.getLogger(__name__)


async def succeeded(
    pool: asyncpg.Pool,
    work: asyncpg.Record,
    owner: str,
    lot: LotRequest,
    result: ModelResult,
    call: tuple[int, str | None] | None = None,
    simulated: bool = False,
    handoff: Handoff | None = None,
) -> None:
    """Store the result and emit LotAssessed, with the successful call's log line: one
    statement (results.finish_assessed), atomic without a transaction block. With ``handoff``
    this process publishes the event itself, right after (gen_common.outbox_handoff)."""
    if simulated:
        result = replace(result, assessment={**result.assessment, "simulated": True})
    event = handler.assessed_event(handler.LotRef.of(work), result, lot.missing_images)
    async with pool.acquire() as conn:
        stored, written = await results.finish_assessed(
            conn,
            work,
            owner,
            call,
            result,
            missing_images=lot.missing_images,
            event=outbox.row_of(event),
            held=handoff is not None,
        )
    if handoff is not None and written is not None:
        handoff.hand([written])
    if not stored:
        log.warning("lease lost before storing; result dropped", extra={"work": work["id"]})


def _missing(work: asyncpg.Record, error: GenError, lot: LotRequest | None) -> list[str]:
    if isinstance(error, ImagesUnreachable):
        return error.missing
    return lot.missing_images if lot is not None else []


def _failure_reason(
    error: GenError, work: asyncpg.Record, o: VisionOptions, *, free: bool
) -> str | None:
    """The LotFailed reason, or None when the lot should be tried again."""
    if isinstance(error, ImagesUnreachable | llm.ImageDownloadFailed):
        return "image_unreachable"
    if isinstance(error, InvalidModelOutput):
        used = work["invalid_outputs"] + 1 >= o.invalid_output_attempts
        return "invalid_model_output" if used or work["attempts"] >= o.max_attempts else None
    if isinstance(error, PermanentError):
        return error.code
    if free or work["attempts"] < o.max_attempts:
        return None
    return error.code


async def failed(
    pool: asyncpg.Pool,
    o: VisionOptions,
    breaker: Breaker,
    work: asyncpg.Record,
    owner: str,
    error: GenError,
    lot: LotRequest | None,
) -> None:
    """Cancel, fail (LotFailed) or requeue the lot after ``error``."""
    attempts: int = work["attempts"]
    refused = lot.refused if lot is not None else list(work["refused_images"])
    free = isinstance(error, BreakerOpen) or (
        isinstance(error, RateLimited) and not isinstance(error, llm.QuotaExhausted)
    )
    invalid = isinstance(error, InvalidModelOutput)
    reason = _failure_reason(error, work, o, free=free)
    async with pool.acquire() as conn, conn.transaction():
        if isinstance(error, CallNotWanted):
            if await store.cancel_running(conn, work_id=work["id"], owner=owner):
                log.info("lot cancelled before its model call", extra={"work": work["id"]})
            return
        if reason is not None:
            if not await jobs.fail(
                conn, store.TABLE, job_id=work["id"], owner=owner, error=str(error)
            ):
                return
            await handler.record_failed(
                conn,
                handler.LotRef.of(work),
                reason=reason,
                message=str(error),
                missing_images=_missing(work, error, lot),
            )
            log.info("lot failed", extra={"work": work["id"], "reason": reason})
            return
        delay = (
            0.5
            if invalid
            else llm.retry_delay(
                error, attempts, base_s=o.retry_base_s, cap_s=o.retry_max_s, quota_s=o.quota_retry_s
            )
        )
        if isinstance(error, BreakerOpen):
            delay = max(breaker.open_for(), 0.5)
        if not await jobs.retry_later(
            conn, store.TABLE, job_id=work["id"], owner=owner, delay_s=delay, error=str(error)
        ):
            return
        await store.note_attempt(
            conn,
            work_id=work["id"],
            refused=refused,
            invalid_output=invalid,
            give_back_attempt=free,
        )
