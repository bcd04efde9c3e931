"""SQL of the vision stage's work queue: a job's cancel, the workers' leases and attempts, and the
call log (a vision_calls row before each call). The rows a LotSubmitted writes are
:mod:`gen_vision.intake`.

Plain functions taking a connection; callers open the transactions. A lot's result and its
accounting on lots and jobs are in :mod:`gen_vision.results`.
"""

from __future__ import annotations

import uuid

import asyncpg
from gen_common.db import Conn

TABLE = "vision_work"
CHANNEL = "vision_work"


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
