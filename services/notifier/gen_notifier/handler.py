"""Consumer handlers: run inside the Kafka batch transaction, finalise state, enqueue deliveries.

lots.translated / lots.failed -> the lot is finalised once (conditional update; only the winner
counts it into the job), its W2 chunk and v2 lot event are enqueued, and the job's completion
when it was the last lot. jobs.control -> the job and its unfinished lots are cancelled, waiting
chunks are flushed and the completion (status cancelled) is enqueued. Nothing here dials out.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import asyncpg
from gen_common import job_usage
from gen_common.db import Conn
from gen_common.errors import RetryableError
from gen_common.events import JobCancelRequested, LotFailed, LotTranslated

from gen_notifier import payloads, store
from gen_notifier.schedule import Clock
from gen_notifier.signing import signing_key

log = logging.getLogger(__name__)
WAKE_CHANNEL = "gen_notifier_work"


@dataclass(frozen=True, slots=True)
class Deps:
    shared_key: str
    chunk_size: int
    base_url: str
    clock: Clock
    refuse: Callable[[str], Awaitable[str | None]]  # registration-time SSRF check: reason


async def on_translated(event: LotTranslated, conn: Conn, deps: Deps) -> None:
    lot = await store.finalise_lot(
        conn,
        event.job_id,
        event.lot_seq,
        status="completed",
        descriptions=[d.model_dump(exclude_none=True) for d in event.descriptions],
        missing_images=event.missing_images,
        pending_languages=event.pending_languages,
        warnings=event.warnings,
    )
    await _after_final(conn, deps, event.job_id, lot)


async def on_failed(event: LotFailed, conn: Conn, deps: Deps) -> None:
    lot = await store.finalise_lot(
        conn,
        event.job_id,
        event.lot_seq,
        status="cancelled" if event.reason == "cancelled" else "failed",
        missing_images=event.missing_images,
        error_code=event.reason,
        error_message=event.message or f"{event.stage} failed: {event.reason}",
    )
    await _after_final(conn, deps, event.job_id, lot)


async def on_cancel(event: JobCancelRequested, conn: Conn, deps: Deps) -> None:
    try:
        job = await store.cancel_job(conn, event.job_id)
    except asyncpg.exceptions.TransactionRollbackError as exc:
        raise RetryableError(f"cancel conflicted: {exc}") from exc
    if job is None:
        log.info(
            "cancel of an unknown or finished job ignored", extra={"job_id": str(event.job_id)}
        )
        return
    for url in await store.waiting_urls(conn, job["job_id"]):
        await _send_chunks(conn, deps, job, url, flush=True)
    await _completion(conn, deps, job)


async def _after_final(
    conn: Conn, deps: Deps, job_id: uuid.UUID, lot: asyncpg.Record | None
) -> None:
    if lot is None:
        log.info("lot already final or unknown", extra={"job_id": str(job_id)})
        return
    try:
        job = await store.count_lot(conn, job_id, lot)
        if job is None:
            return
        if job["completed_lots"] + job["failed_lots"] >= job["total_lots"]:
            await job_usage.fold(conn, job_id)  # exact totals in the completion webhook
        finished = await store.finish_job(conn, job_id)
    except asyncpg.exceptions.TransactionRollbackError as exc:  # deadlock between batches
        raise RetryableError(f"finalisation conflicted: {exc}") from exc
    job = finished or job
    if lot["webhook"]:
        await store.add_chunk_lot(conn, job_id, lot["webhook"], lot["lot_seq"])
        flush = await store.url_settled(conn, job, lot["webhook"])
        await _send_chunks(conn, deps, job, lot["webhook"], flush=flush)
    if job["api_version"] == 2 and job["webhook_url"]:
        body = payloads.lot_event_body(job_id, lot, deps.clock.now())
        await enqueue(conn, deps, job["webhook_url"], job_id, "lot_event", lambda _key: body)
    if finished is not None:
        await _completion(conn, deps, finished)


async def _send_chunks(
    conn: Conn, deps: Deps, job: asyncpg.Record, url: str, *, flush: bool
) -> None:
    chunks = await store.take_chunks(conn, job["job_id"], url, size=deps.chunk_size, flush=flush)
    for chunk in chunks:
        await enqueue(
            conn, deps, url, job["job_id"], "lots", partial(payloads.lots_body, lots=chunk)
        )


async def _completion(conn: Conn, deps: Deps, job: asyncpg.Record) -> None:
    url = job["webhook_url"]
    if not url:
        return
    body = payloads.completion_body(job, deps.clock.now(), deps.base_url)
    msg_id = payloads.completion_msg_id(job["job_id"], url)
    await enqueue(conn, deps, url, job["job_id"], "completion", lambda _key: body, msg_id=msg_id)


async def enqueue(
    conn: Conn,
    deps: Deps,
    url: str,
    job_id: uuid.UUID | None,
    kind: str,
    build: Callable[[bytes], bytes],
    *,
    msg_id: str | None = None,
) -> None:
    """Register one delivery: refused URLs end ``failed``, disabled endpoints ``disabled``."""
    endpoint = await store.endpoint(conn, url, deps.clock.now())
    reason = await deps.refuse(url)
    status = "queued"
    if reason is not None:
        status = "failed"
        log.warning("webhook URL refused", extra={"url": url, "reason": reason})
    elif endpoint["disabled_at"] is not None:
        status, reason = "disabled", "endpoint disabled"
    body = build(signing_key(endpoint["secret"], deps.shared_key))
    inserted = await store.insert_delivery(
        conn,
        msg_id=msg_id or payloads.new_msg_id(),
        endpoint_id=endpoint["id"],
        job_id=job_id,
        kind=kind,
        body=body,
        status=status,
        last_error=reason,
        next_attempt_at=deps.clock.now(),
    )
    if inserted and status == "queued":
        await conn.execute(f"NOTIFY {WAKE_CHANNEL}")
