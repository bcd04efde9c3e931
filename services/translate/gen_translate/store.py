"""SQL of the translate stage's work queue: a job's cancel, the workers' claim, pre-call check,
requeue and deadline expiry. The rows a LotAssessed writes are :mod:`gen_translate.intake`.

Plain functions taking a connection; callers own transactions. A (lot, language)'s outcome and
the lot's completion are in :mod:`gen_translate.results`.
"""

from __future__ import annotations

import uuid

import asyncpg
from gen_common.db import Conn

WORK = "translate_work"
PRIORITY = {"sync": 10, "realtime": 5, "batch": 1}


async def cancel_job(conn: Conn, job_id: uuid.UUID) -> int:
    """Cancel the job's queued work; running work finishes but emits nothing."""
    await conn.execute(
        "INSERT INTO translate_cancelled_jobs (job_id) VALUES ($1) ON CONFLICT DO NOTHING", job_id
    )
    await conn.execute("UPDATE translate_lots SET cancelled = true WHERE job_id = $1", job_id)
    status = await conn.execute(
        """UPDATE translate_work SET status = 'cancelled', lease_owner = NULL, lease_until = NULL
           WHERE job_id = $1 AND status = 'queued'""",
        job_id,
    )
    return int(status.split()[-1])


# The claimed work row joined with its lot's source (English text, mode, and what its
# LotTranslated is built from) and whether the lot or its job was cancelled (the checks of
# still_wanted): the call's one statement that checks and records, one round trip for the claim.
CLAIM_WITH_SOURCE = """
    SELECT c.*, l.description_en, l.mode AS lot_mode, l.job_id IS NOT NULL AS has_source,
           l.lot_id, l.languages, l.missing_images, l.assessment, l.translated_at,
           coalesce(l.cancelled, false)
           OR EXISTS (SELECT 1 FROM translate_cancelled_jobs x WHERE x.job_id = c.job_id)
           OR EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = c.job_id AND j.status = 'cancelled')
           OR EXISTS (SELECT 1 FROM lots t WHERE t.job_id = c.job_id AND t.lot_seq = c.lot_seq
                                             AND t.status = 'cancelled')
           AS cancelled
    FROM claimed c LEFT JOIN translate_lots l ON l.job_id = c.job_id AND l.lot_seq = c.lot_seq"""


# What CLAIM_WITH_SOURCE returns, for work rows ``w`` the intake statement leased as it wrote
# them, from its lots ``x`` (the LotAssessed being written: neither cancelled nor translated).
LEASED_WITH_SOURCE = """
    SELECT w.*, x.description_en, x.mode AS lot_mode, true AS has_source, x.lot_id,
           x.languages, x.missing_images, x.assessment, NULL::timestamptz AS translated_at,
           false AS cancelled"""


async def still_wanted(conn: Conn, *, work_id: int, owner: str, lease_s: float) -> bool:
    """Right before a model call that waited for its throttle slot (the claim's cancel check is
    stale then): refresh the lease if this worker still holds it and neither the lot nor its job
    was cancelled meanwhile (False: the call must not start)."""
    row = await conn.fetchval(
        f"""UPDATE {WORK} w SET lease_until = now() + make_interval(secs => $3)
            WHERE w.id = $1 AND w.status = 'running' AND w.lease_owner = $2
              AND NOT EXISTS (SELECT 1 FROM translate_lots l
                              WHERE l.job_id = w.job_id AND l.lot_seq = w.lot_seq AND l.cancelled)
              AND NOT EXISTS (SELECT 1 FROM translate_cancelled_jobs c WHERE c.job_id = w.job_id)
              AND NOT EXISTS (SELECT 1 FROM jobs j
                              WHERE j.job_id = w.job_id AND j.status = 'cancelled')
              AND NOT EXISTS (SELECT 1 FROM lots t WHERE t.job_id = w.job_id
                                                     AND t.lot_seq = w.lot_seq
                                                     AND t.status = 'cancelled')
            RETURNING 1""",
        work_id,
        owner,
        lease_s,
    )
    return row is not None


async def requeue_uncounted(conn: Conn, *, work_id: int, owner: str, delay_s: float) -> bool:
    """Back off (after a 429) without spending one of the row's attempts."""
    status = await conn.execute(
        f"""UPDATE {WORK} SET status = 'queued', lease_owner = NULL, lease_until = NULL,
                   attempts = greatest(attempts - 1, 0), last_error = 'rate_limited',
                   next_attempt_at = now() + make_interval(secs => $3)
            WHERE id = $1 AND status = 'running' AND lease_owner = $2""",
        work_id,
        owner,
        delay_s,
    )
    return status.endswith(" 1")


async def expire_overdue(conn: Conn) -> list[asyncpg.Record]:
    """Queued sync work whose time budget has run out: failed, returned for recording."""
    return await conn.fetch(
        f"""UPDATE {WORK} SET status = 'failed', last_error = 'translation_time_limit_exceeded'
            WHERE id IN (SELECT id FROM {WORK}
                         WHERE status = 'queued' AND deadline_at < now()
                         ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED)
            RETURNING job_id, lot_seq, language"""
    )
