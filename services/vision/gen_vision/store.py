"""SQL of the vision stage's intake and work queue: jobs/lots/work rows from events, a job's
cancel, the workers' leases and attempts, and the call log (a vision_calls row before each call).

Plain functions taking a connection; callers open the transactions. A lot's result and its
accounting on lots and jobs are in :mod:`gen_vision.results`.
"""

from __future__ import annotations

import uuid

import asyncpg
from gen_common import tracing
from gen_common.db import Conn
from gen_common.events import LotSubmitted

TABLE = "vision_work"
CHANNEL = "vision_work"
PRIORITY = {"sync": 10, "realtime": 5, "batch": 1}


async def submit_lot(conn: Conn, e: LotSubmitted, *, path: str) -> bool:
    """Everything a LotSubmitted writes, in ONE statement (the consumer's hot path): unless ingest
    aborted the job, the jobs row (new ones start 'processing'), the lots row with its trace
    context, the work row (cancelled at once if the job already is), a pending job flipped to
    'processing' and the workers' NOTIFY. False if the lot was known (a redelivery) or dropped.

    The sibling CTEs share one snapshot, which is why a job inserted here starts 'processing'
    (the UPDATE cannot see it). The lots row keeps the record's trace context, so the lot's
    later events continue its trace (gen_common.outbox.add reads it when no context is bound).
    """
    queued: int = await conn.fetchval(
        f"""WITH go AS (SELECT NOT EXISTS (SELECT 1 FROM aborted_jobs WHERE job_id = $1) AS ok),
           j AS (
               INSERT INTO jobs (job_id, client_id, api_version, mode, languages, total_lots,
                                 webhook_url, status)
               SELECT $1, $2, $3, $4, $5, $6, $7, 'processing' FROM go
               -- Known job: no INSERT at all. ON CONFLICT alone waits for every transaction
               -- holding the jobs row (workers add tokens per lot): the partition would stall.
               WHERE go.ok AND NOT EXISTS (SELECT 1 FROM jobs WHERE job_id = $1)
               ON CONFLICT (job_id) DO NOTHING),
           l AS (
               INSERT INTO lots (job_id, lot_seq, lot_id, webhook, traceparent)
               SELECT $1, $8, $9, $10, $11 FROM go WHERE go.ok
               ON CONFLICT (job_id, lot_seq) DO NOTHING),
           w AS (
               INSERT INTO vision_work (job_id, lot_seq, lot_id, mode, path, languages, images,
                                        additional_info, priority, status)
               SELECT $1, $8, $9, $4, $12, $5, $13, $14, $15,
                      CASE WHEN EXISTS (SELECT 1 FROM jobs
                                        WHERE job_id = $1 AND status = 'cancelled')
                           THEN 'cancelled' ELSE 'queued' END
               FROM go WHERE go.ok
               ON CONFLICT (job_id, lot_seq) DO NOTHING
               RETURNING status),
           p AS (
               UPDATE jobs SET status = 'processing', updated_at = now()
               WHERE job_id = $1 AND status = 'pending' AND EXISTS (SELECT 1 FROM w))
           SELECT (SELECT count(*) FROM w), (SELECT pg_notify('{CHANNEL}', '') FROM w LIMIT 1)""",
        e.job_id,
        e.client_id,
        e.api_version,
        e.mode,
        e.languages,
        e.total_lots,
        e.job_webhook_url,
        e.lot_seq,
        e.lot_id,
        e.webhook,
        tracing.current(),
        path,
        e.images,
        e.additional_info,
        PRIORITY[e.mode],
    )
    return queued > 0


async def cancel_queued(conn: Conn, job_id: uuid.UUID) -> int:
    status = await conn.execute(
        """UPDATE vision_work SET status = 'cancelled', lease_owner = NULL, lease_until = NULL,
                  updated_at = now()
           WHERE job_id = $1 AND status = 'queued'""",
        job_id,
    )
    return int(status.split()[-1])


# -- worker side ---------------------------------------------------------------------------------
async def renew_lease(conn: Conn, *, work_id: int, owner: str, lease_s: float) -> bool:
    status = await conn.execute(
        """UPDATE vision_work SET lease_until = now() + make_interval(secs => $3)
           WHERE id = $1 AND status = 'running' AND lease_owner = $2""",
        work_id,
        owner,
        lease_s,
    )
    return status.endswith(" 1")


async def call_started(
    conn: Conn, work: asyncpg.Record, *, owner: str, model: str, images: int
) -> int | None:
    """Log a model call about to start; None (nothing written) when it must not start.

    One statement checks, right before the call, that this worker still holds the lease, that
    the job still exists (ingest deletes a job it aborted, e.g. when Kafka acknowledged only part
    of its lots in time) and that neither the job nor the lot was cancelled meanwhile (a cancel
    that landed after the claim).
    """
    call_id: int | None = await conn.fetchval(
        """WITH ok AS (
               SELECT 1 FROM vision_work w
               WHERE w.id = $1 AND w.status = 'running' AND w.lease_owner = $5
                 AND EXISTS (SELECT 1 FROM jobs j
                             WHERE j.job_id = $2 AND j.status <> 'cancelled')
                 AND NOT EXISTS (SELECT 1 FROM lots l WHERE l.job_id = $2 AND l.lot_seq = $3
                                                        AND l.status = 'cancelled')),
           bump AS (UPDATE vision_work SET model_calls = model_calls + 1
                    WHERE id = $1 AND EXISTS (SELECT 1 FROM ok))
           INSERT INTO vision_calls (work_id, job_id, lot_seq, attempt, owner, model, image_count)
           SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM ok) RETURNING id""",
        work["id"],
        work["job_id"],
        work["lot_seq"],
        work["attempts"],
        owner,
        model,
        images,
    )
    return call_id


async def cancel_running(conn: Conn, *, work_id: int, owner: str) -> bool:
    """The claimed row of a lot cancelled after its claim: cancelled, no call, no event."""
    status = await conn.execute(
        """UPDATE vision_work SET status = 'cancelled', lease_owner = NULL, lease_until = NULL,
                  attempts = greatest(attempts - 1, 0), last_error = 'cancelled',
                  updated_at = now()
           WHERE id = $1 AND status = 'running' AND lease_owner = $2""",
        work_id,
        owner,
    )
    return status.endswith(" 1")


async def call_finished(conn: Conn, call_id: int, outcome: str, response_id: str | None) -> None:
    await conn.execute(
        """UPDATE vision_calls SET finished_at = now(), outcome = $2, response_id = $3
           WHERE id = $1""",
        call_id,
        outcome,
        response_id,
    )


async def note_attempt(
    conn: Conn,
    *,
    work_id: int,
    refused: list[str],
    invalid_output: bool = False,
    give_back_attempt: bool = False,
) -> None:
    """Keep what an attempt learned (refused images, invalid answers) for the next one."""
    await conn.execute(
        """UPDATE vision_work SET refused_images = $2,
                  invalid_outputs = invalid_outputs + $3::int,
                  attempts = greatest(attempts - $4::int, 0), updated_at = now()
           WHERE id = $1""",
        work_id,
        refused,
        int(invalid_output),
        int(give_back_attempt),
    )
