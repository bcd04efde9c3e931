"""SQL of the status service: reads of ``jobs`` and ``lots``, plus the one cancel transition.

Job ids arrive as the client typed them; PostgreSQL parses them (``$1::text::uuid``) so every
spelling it accepts finds the job, exactly like the original. A string it cannot parse is "no job".
Callers open transactions; nothing here does.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from gen_common.db import Conn

# Longest spelling PostgreSQL accepts for a uuid: braces and a hyphen after every 4 digits.
MAX_ID_CHARS = 64
CANCELLABLE = ("pending", "processing")
FINISHED_LOT = ("completed", "failed", "cancelled")

_JOB_COLUMNS = """job_id, client_id, api_version, mode, status, languages, total_lots,
    completed_lots, failed_lots, webhook_url, input_tokens, cached_tokens, output_tokens,
    reasoning_tokens, cost_usd, error_message, created_at, updated_at, completed_at,
    cancelled_at"""
_LOT_COLUMNS = """lot_seq, lot_id, status, webhook, missing_images, descriptions,
    pending_languages, warnings, error_code, error_message, input_tokens, cached_tokens,
    output_tokens, reasoning_tokens, cost_usd, created_at, updated_at, completed_at"""


async def get_job(conn: Conn | asyncpg.Pool, job_id: str) -> asyncpg.Record | None:
    """The job header, or None for an unknown or unparseable id (one primary-key lookup)."""
    if len(job_id) > MAX_ID_CHARS or "\x00" in job_id:
        return None
    try:
        return await conn.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = $1::text::uuid", job_id
        )
    except asyncpg.InvalidTextRepresentationError:
        return None


async def lots_page(
    conn: Conn | asyncpg.Pool,
    job_id: object,
    *,
    after_seq: int = -1,
    limit: int,
    finished_only: bool = False,
) -> list[asyncpg.Record]:
    """Lots of a job in ``lot_seq`` order after ``after_seq`` (keyset, primary-key index)."""
    statuses: Sequence[str] | None = FINISHED_LOT if finished_only else None
    return await conn.fetch(
        f"""SELECT {_LOT_COLUMNS} FROM lots
            WHERE job_id = $1 AND lot_seq > $2 AND ($4::text[] IS NULL OR status = ANY($4))
            ORDER BY lot_seq LIMIT $3""",
        job_id,
        after_seq,
        limit,
        statuses,
    )


async def list_jobs(
    conn: Conn | asyncpg.Pool, *, status: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """One page of jobs (newest first) and the number of all jobs matching the filter."""
    rows = await conn.fetch(
        f"""SELECT {_JOB_COLUMNS}, count(*) OVER () AS total FROM jobs
            WHERE ($1::text IS NULL OR status = $1)
            ORDER BY created_at DESC, job_id DESC LIMIT $2 OFFSET $3""",
        status,
        limit,
        offset,
    )
    if rows:
        return list(rows), int(rows[0]["total"])
    total = await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE ($1::text IS NULL OR status = $1)", status
    )
    return [], int(total)


async def mark_cancelled(conn: Conn, job_id: object, *, message: str) -> asyncpg.Record | None:
    """The one write: pending/processing -> cancelled. None when the job was not cancellable."""
    return await conn.fetchrow(
        f"""UPDATE jobs SET status = 'cancelled', error_message = $2,
                   cancelled_at = now(), updated_at = now()
            WHERE job_id = $1 AND status = ANY($3::text[])
            RETURNING {_JOB_COLUMNS}""",
        job_id,
        message,
        list(CANCELLABLE),
    )


async def ping(conn: Conn | asyncpg.Pool) -> bool:
    return bool(await conn.fetchval("SELECT true"))
