"""SQL of the translate stage's intake and work queue: the lot and work rows a LotAssessed
writes, a job's cancel, the workers' claim, pre-call check, requeue and deadline expiry.

Plain functions taking a connection; callers own transactions. A (lot, language)'s outcome and
the lot's completion are in :mod:`gen_translate.results`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
from gen_common.db import Conn
from gen_common.events import LotAssessed

WORK = "translate_work"
PRIORITY = {"sync": 10, "realtime": 5, "batch": 1}


async def accept_lot(
    conn: Conn,
    event: LotAssessed,
    languages: Sequence[str],
    deadline: datetime | None,
    *,
    work_languages: Sequence[str],
    priority: int,
    notify: str,
) -> tuple[bool, bool]:
    """Everything a LotAssessed writes, in ONE statement (the consumer's hot path): unless the lot
    or its job was cancelled, the translate_lots row, lots.status 'translating', one work row per
    language of ``work_languages`` and the workers' NOTIFY on channel ``notify``.

    Returns ``(cancelled, inserted)``; ``inserted`` is False for a redelivery (the first delivery
    recorded everything). A lot is cancelled when translate_cancelled_jobs has its job or its lots
    row says 'cancelled'.
    """
    row = await conn.fetchrow(
        f"""WITH c AS (
                SELECT EXISTS (SELECT 1 FROM translate_cancelled_jobs WHERE job_id = $1)
                    OR EXISTS (SELECT 1 FROM lots WHERE job_id = $1 AND lot_seq = $2
                                                    AND status = 'cancelled') AS cancelled),
            l AS (
                INSERT INTO translate_lots (job_id, lot_seq, lot_id, mode, languages,
                                            description_en, assessment, missing_images,
                                            assessed_at, deadline_at)
                SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM c WHERE NOT c.cancelled
                ON CONFLICT (job_id, lot_seq) DO NOTHING RETURNING 1),
            m AS (
                UPDATE lots SET status = 'translating', updated_at = now()
                WHERE job_id = $1 AND lot_seq = $2
                  AND status IN ('pending', 'assessing', 'assessed')
                  AND EXISTS (SELECT 1 FROM l)),
            w AS (
                INSERT INTO translate_work (job_id, lot_seq, language, priority, deadline_at)
                SELECT $1, $2, lang, $12, $10 FROM unnest($11::text[]) AS lang
                WHERE EXISTS (SELECT 1 FROM l)
                ON CONFLICT (job_id, lot_seq, language) DO NOTHING RETURNING 1)
            SELECT (SELECT cancelled FROM c) AS cancelled,
                   EXISTS (SELECT 1 FROM l) AS inserted,
                   (SELECT pg_notify('{notify}', '') FROM w LIMIT 1) AS notified""",
        event.job_id,
        event.lot_seq,
        event.lot_id,
        event.mode,
        list(languages),
        event.description_en,
        event.assessment,
        event.missing_images,
        event.occurred_at,
        deadline,
        list(work_languages),
        priority,
    )
    assert row is not None
    return bool(row["cancelled"]), bool(row["inserted"])


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
