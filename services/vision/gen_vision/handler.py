"""The vision stage's decisions: what a submitted lot becomes, what a result or failure writes.

- :func:`on_submitted` / :func:`on_cancel` run inside the consumer's batch transaction: jobs and
  lots rows from the event (ON CONFLICT DO NOTHING), one ``vision_work`` row per lot (redelivery
  absorbed by UNIQUE(job_id, lot_seq)), cancel of queued work. No outside call happens here.
- :func:`record_assessed` / :func:`record_failed` write the outcome of one lot and its outbox event
  in the caller's transaction. They are path-independent: the realtime worker calls them after its
  owner check, and a Batch API path can call them for lines it maps back to lots.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from gen_common import outbox, tracing
from gen_common.claimer import Claimer
from gen_common.db import Conn
from gen_common.events import JobCancelRequested, LotAssessed, LotFailed, LotSubmitted
from gen_common.events import Mode as EventMode
from gen_common.kafka import Received

from gen_vision import intake, results, store
from gen_vision.lot_request import ModelResult
from gen_vision.settings import VisionOptions


def _path(event: LotSubmitted, options: VisionOptions) -> str:
    big = options.batch_min_lots is not None and event.total_lots > options.batch_min_lots
    return "batch" if event.mode == "batch" and big else "realtime"


async def on_submitted(event: LotSubmitted, conn: Conn, *, options: VisionOptions) -> None:
    # One statement: skipped for a job ingest aborted (answered 503), else the jobs/lots/work
    # rows, a pending job flipped to 'processing' and the workers' NOTIFY (intake.submit_lots).
    await intake.submit_lots(conn, [(event, _path(event, options), tracing.current())])


async def on_submitted_many(
    received: list[Received],
    conn: Conn,
    *,
    options: VisionOptions,
    claimer: Claimer[asyncpg.Record] | None = None,
) -> None:
    """:func:`on_submitted` for a consumed batch's lots, in the same one statement. With the
    ``claimer`` of this process's workers, and the statement its own transaction, its sync lots
    go straight to the workers waiting (gen_common.claimer.Lease), leased by that statement."""
    lots = [(r.event, _path(r.event, options), r.traceparent) for r in received]
    sync = any(event.mode == "sync" for event, _, _ in lots)
    if claimer is None or not sync or conn.is_in_transaction():
        await intake.submit_lots(conn, lots)
        return
    with claimer.reserve() as reserved:
        _, leased = await intake.submit_lots(conn, lots, reserved.lease(options.lease_s))
        reserved.hand(leased)  # committed: the statement was its own transaction


def submitted_in_one_statement(_: list[Received]) -> bool:
    """:func:`on_submitted_many` writes any lots with one statement (the consumer then needs no
    transaction block, gen_common.kafka.Subscription.atomic)."""
    return True


async def on_cancel(event: JobCancelRequested, conn: Conn) -> None:
    await store.cancel_queued(conn, event.job_id)


@dataclass(frozen=True, slots=True)
class LotRef:
    """What the outcome writers need to know about a lot (from its work row)."""

    job_id: uuid.UUID
    lot_seq: int
    lot_id: str | int
    languages: list[str]
    mode: EventMode

    @classmethod
    def of(cls, work: Any) -> LotRef:
        return cls(
            job_id=work["job_id"],
            lot_seq=work["lot_seq"],
            lot_id=work["lot_id"],
            languages=list(work["languages"]),
            mode=work["mode"],
        )


async def record_assessed(
    conn: Conn,
    lot: LotRef,
    result: ModelResult,
    *,
    missing_images: list[str],
    via_batch: bool = False,
) -> bool:
    """Store the result, account tokens/cost, emit LotAssessed; False if already recorded."""
    status = await results.save_result(
        conn, lot.job_id, lot.lot_seq, result, missing_images=missing_images, via_batch=via_batch
    )
    if status is None:
        return False
    if status != "assessed":
        return True  # e.g. cancelled: kept for the cost record, but announces nothing more
    await outbox.add(conn, assessed_event(lot, result, missing_images))
    return True


def assessed_event(lot: LotRef, result: ModelResult, missing_images: list[str]) -> LotAssessed:
    return LotAssessed(
        job_id=lot.job_id,
        lot_seq=lot.lot_seq,
        lot_id=lot.lot_id,
        languages=lot.languages,
        mode=lot.mode,
        assessment=result.assessment,
        description_en=result.html,
        missing_images=missing_images,
        usage=result.usage,
    )


async def record_failed(
    conn: Conn, lot: LotRef, *, reason: str, message: str, missing_images: list[str]
) -> None:
    """Emit LotFailed(stage="vision"); the notifier finalises the lot and the job counters."""
    await results.set_missing_images(conn, lot.job_id, lot.lot_seq, missing_images)
    await outbox.add(
        conn,
        LotFailed(
            job_id=lot.job_id,
            lot_seq=lot.lot_seq,
            lot_id=lot.lot_id,
            stage="vision",
            reason=reason[:100],
            message=message[:2000],
            missing_images=missing_images,
        ),
    )
