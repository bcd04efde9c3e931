"""SQL of the consumer side: finalise lots and jobs, collect W2 chunks, register deliveries.

Callers run these inside the Kafka batch transaction. The job row is locked (by its counter
update) before a chunk is checked, so two transactions finishing the last lots of one URL are
serialised and the later one sees both lots final.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from gen_common import job_usage
from gen_common.db import Conn

FINAL = ("completed", "failed", "cancelled")
_LOT_COLUMNS = """lot_seq, lot_id, status, webhook, descriptions, missing_images,
                  pending_languages, warnings, error_code, error_message, input_tokens,
                  cached_tokens, output_tokens, reasoning_tokens, cost_usd"""


async def finalise_lot(
    conn: Conn,
    job_id: uuid.UUID,
    lot_seq: int,
    *,
    status: str,
    descriptions: list[dict[str, str]] | None = None,
    missing_images: list[str] | None = None,
    pending_languages: list[str] | None = None,
    warnings: list[str] | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> asyncpg.Record | None:
    """Move a lot to its final status; None when it already was final (or is unknown)."""
    return await conn.fetchrow(
        f"""UPDATE lots SET status = $3, descriptions = COALESCE($4, descriptions),
                   missing_images = CASE WHEN cardinality($5::text[]) > 0 THEN $5::text[]
                                         ELSE missing_images END,
                   pending_languages = COALESCE($6, pending_languages),
                   warnings = COALESCE($7, warnings), error_code = $8, error_message = $9,
                   completed_at = now(), updated_at = now()
            WHERE job_id = $1 AND lot_seq = $2 AND status <> ALL($10::text[])
            RETURNING {_LOT_COLUMNS}""",
        job_id,
        lot_seq,
        status,
        descriptions,
        missing_images or [],
        pending_languages,
        warnings,
        error_code,
        error_message,
        list(FINAL),
    )


async def count_lot(conn: Conn, job_id: uuid.UUID, lot: asyncpg.Record) -> asyncpg.Record | None:
    """Count one final lot on the job; locks the job row.

    Tokens and cost are not added here: vision and translate add their usage to the lot when
    they store a result and append it to ``job_usage``, which :mod:`gen_common.job_usage` folds
    into the job (every half second, and when the job finishes).
    """
    completed = 1 if lot["status"] == "completed" else 0
    return await conn.fetchrow(
        """UPDATE jobs SET completed_lots = completed_lots + $2, failed_lots = failed_lots + $3,
                  updated_at = now(),
                  status = CASE WHEN status = 'pending' THEN 'processing' ELSE status END
           WHERE job_id = $1 RETURNING *""",
        job_id,
        completed,
        1 - completed,
    )


async def finish_job(conn: Conn, job_id: uuid.UUID) -> asyncpg.Record | None:
    """Completed when every lot is final; failed when every lot failed. Once."""
    return await conn.fetchrow(
        """UPDATE jobs SET status = CASE WHEN completed_lots = 0 THEN 'failed' ELSE 'completed' END,
                  error_message = CASE WHEN completed_lots = 0 THEN 'every lot failed'
                                       ELSE error_message END,
                  completed_at = now(), updated_at = now()
           WHERE job_id = $1 AND completed_lots + failed_lots >= total_lots
             AND status <> ALL($2::text[])
           RETURNING *""",
        job_id,
        list(FINAL),
    )


async def cancel_job(conn: Conn, job_id: uuid.UUID) -> asyncpg.Record | None:
    """Cancel the job and its unfinished lots; returns the job when it is (now) cancelled."""
    await conn.execute(
        """UPDATE jobs SET status = 'cancelled', cancelled_at = now(), updated_at = now(),
                  error_message = COALESCE(error_message, 'Job cancelled by user request')
           WHERE job_id = $1 AND status <> ALL($2::text[])""",
        job_id,
        list(FINAL),
    )
    await job_usage.fold(conn, job_id)  # the cancelled job's totals, exact in its webhook
    job = await conn.fetchrow("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", job_id)
    if job is None or job["status"] != "cancelled":
        return None
    await conn.execute(
        """UPDATE lots SET status = 'cancelled', error_code = 'cancelled', updated_at = now()
           WHERE job_id = $1 AND status <> ALL($2::text[])""",
        job_id,
        list(FINAL),
    )
    return job


async def add_chunk_lot(conn: Conn, job_id: uuid.UUID, url: str, lot_seq: int) -> None:
    await conn.execute(
        """INSERT INTO notifier_chunk_lots (job_id, url, lot_seq) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        job_id,
        url,
        lot_seq,
    )


async def url_settled(conn: Conn, job: asyncpg.Record, url: str) -> bool:
    """No lot of the job with this URL can still finish (all known, none pending)."""
    if job["status"] in FINAL:
        return True
    return bool(
        await conn.fetchval(
            """SELECT (SELECT count(*) FROM lots WHERE job_id = $1) >= $3
                      AND NOT EXISTS (SELECT 1 FROM lots WHERE job_id = $1 AND webhook = $2
                                      AND status <> ALL($4::text[]))""",
            job["job_id"],
            url,
            job["total_lots"],
            list(FINAL),
        )
    )


async def take_chunks(
    conn: Conn, job_id: uuid.UUID, url: str, *, size: int, flush: bool
) -> list[list[asyncpg.Record]]:
    """Remove and return the waiting lots in chunks of ``size`` (and the rest when ``flush``)."""
    seqs = [
        r["lot_seq"]
        for r in await conn.fetch(
            """SELECT lot_seq FROM notifier_chunk_lots WHERE job_id = $1 AND url = $2
               ORDER BY lot_seq""",
            job_id,
            url,
        )
    ]
    keep = 0 if flush else len(seqs) % size
    taken = seqs[: len(seqs) - keep]
    if not taken:
        return []
    await conn.execute(
        """DELETE FROM notifier_chunk_lots
           WHERE job_id = $1 AND url = $2 AND lot_seq = ANY($3::int[])""",
        job_id,
        url,
        taken,
    )
    rows = await conn.fetch(
        f"""SELECT {_LOT_COLUMNS} FROM lots WHERE job_id = $1 AND lot_seq = ANY($2::int[])
            ORDER BY lot_seq""",
        job_id,
        taken,
    )
    return [rows[i : i + size] for i in range(0, len(rows), size)]


async def waiting_urls(conn: Conn, job_id: uuid.UUID) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT url FROM notifier_chunk_lots WHERE job_id = $1 ORDER BY url", job_id
    )
    return [r["url"] for r in rows]


async def endpoint(conn: Conn, url: str, now: datetime) -> asyncpg.Record:
    """The endpoint row of ``url``, created on first use (secret NULL: the shared key)."""
    row = await conn.fetchrow("SELECT * FROM webhook_endpoints WHERE url = $1", url)
    if row is None:
        await conn.execute(
            """INSERT INTO webhook_endpoints (url, breaker_since) VALUES ($1, $2)
               ON CONFLICT (url) DO NOTHING""",
            url,
            now,
        )
        row = await conn.fetchrow("SELECT * FROM webhook_endpoints WHERE url = $1", url)
    assert row is not None
    return row


async def insert_delivery(conn: Conn, **values: Any) -> bool:
    """A new delivery row; False when its msg_id exists (a completion already enqueued)."""
    status = await conn.execute(
        """INSERT INTO webhook_deliveries (msg_id, endpoint_id, job_id, kind, body, status,
                                           last_error, next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (msg_id) DO NOTHING""",
        values["msg_id"],
        values["endpoint_id"],
        values["job_id"],
        values["kind"],
        values["body"],
        values["status"],
        values.get("last_error"),
        values["next_attempt_at"],
    )
    return status.endswith(" 1")
