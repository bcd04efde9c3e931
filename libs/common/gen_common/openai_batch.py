"""The OpenAI Batch API engine, shared by every stage that sends /v1/responses requests.

A stage implements :class:`BatchSource` over its work table and runs :func:`run` next to its
realtime workers. The engine claims the stage's due batch-mode items, packs them into JSONL files
(one job and one model per file; at most ``max_lines`` lines, ``max_bytes`` bytes and the model's
enqueued-token cap minus what is already in flight), uploads each file, creates the batch, polls
it, maps every output/error line back to its work item by ``custom_id`` and hands the result to
the stage. Everything is recorded in ``openai_batches`` / ``openai_batch_items`` (migration 0250)
before and after each remote call (:mod:`gen_common.batch_submit`, :mod:`gen_common.batch_remote`);
a process leases the rows it submits or polls, so two processes never handle the same batch.

One job per file: a job's batches hold only its items, so :func:`cancel_job` cancels exactly the
job's batches and never another job's lines (a big job may still span several files).

Line rules (:mod:`gen_common.batch_lines`): a line is failed when ``error`` is set or
``response.status_code >= 400``. ``batch_expired`` lines and lines skipped by a cancel we did not
ask for go back to the stage at once without counting an attempt (:meth:`BatchSource.release`);
429/5xx lines are retried in a later batch with backoff while ``attempt < max_attempts``;
every other failure (including the 400 "Error while downloading <url>" image errors) goes to
:meth:`BatchSource.fail` with the classified :class:`LineError`, and the stage's own rules decide
(e.g. drop the image and requeue, or fail the lot). A batch that fails with
``token_limit_exceeded`` releases its items with ``token_limit_backoff_s``; other validation
failures fail the lines they name and release the rest. A batch still running ``stuck_grace_s``
after its 24 h window is cancelled by the monitor and its unfinished lines are sent again (B19).
Cost: :class:`BatchUsage` carries each item's tokens and ``price_factor`` 0.5 for the stage.

custom_id is ``<stage>-<batch row id>-<work row id>``: built only from integers and the stage's
identifier, so it is unique for ANY client lot_id (nothing is ever split out of a client id).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import openai
from openai import AsyncOpenAI

from gen_common.batch_monitor import Monitor
from gen_common.batch_options import BatchOptions
from gen_common.batch_source import (
    BatchRequest,
    BatchSource,
    BatchUsage,
    LineError,
    Rejected,
    check_stage,
)
from gen_common.batch_submit import Submitter
from gen_common.db import Conn, transaction

# what a stage imports from here: the engine, and the types of its BatchSource and settings
__all__ = [
    "BatchOptions",
    "BatchRequest",
    "BatchSource",
    "BatchUsage",
    "LineError",
    "Rejected",
    "cancel_job",
    "request_cancel",
    "run",
]

log = logging.getLogger(__name__)


async def run(
    pool: asyncpg.Pool, client: AsyncOpenAI, source: BatchSource, options: BatchOptions
) -> None:
    """Run the submitter and the monitor until cancelled (add it to the stage's TaskGroup)."""
    check_stage(source.stage)
    finished = asyncio.Event()
    submitter = Submitter(pool, client, source, options, finished)
    monitor = Monitor(pool, client, source, options, finished)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(submitter.loop())
        tg.create_task(monitor.loop())


async def request_cancel(conn: Conn, job_id: str) -> list[str]:
    """Mark the job's open batches for cancellation and its pending items cancelled (DB only).

    Safe inside a consumer handler's transaction; the monitor sends the remote cancels. Returns
    the OpenAI batch ids to cancel now (when the caller can make remote calls).
    """
    await conn.execute(
        """UPDATE openai_batch_items SET status = 'cancelled', finished_at = now()
           WHERE status = 'pending' AND batch_row IN (
               SELECT id FROM openai_batches WHERE job_id = $1 AND status <> 'finished')""",
        job_id,
    )
    rows = await conn.fetch(
        """UPDATE openai_batches SET cancel_requested = true, next_poll_at = now()
           WHERE job_id = $1 AND status IN ('preparing', 'uploaded', 'submitted')
           RETURNING batch_id, remote_status""",
        job_id,
    )
    return [
        r["batch_id"]
        for r in rows
        if r["batch_id"] and r["remote_status"] in (None, "validating", "in_progress")
    ]


async def cancel_job(pool: asyncpg.Pool, client: AsyncOpenAI, job_id: str) -> int:
    """Cancel every in-flight OpenAI batch holding items of ``job_id``; returns how many."""
    async with transaction(pool) as conn:
        batch_ids = await request_cancel(conn, job_id)
    cancelled = 0
    for batch_id in batch_ids:
        try:
            await client.batches.cancel(batch_id)
            cancelled += 1
        except openai.APIError as exc:  # the monitor retries: cancel_requested stays set
            log.warning("batch cancel failed", extra={"batch_id": batch_id, "error": str(exc)})
    return cancelled
