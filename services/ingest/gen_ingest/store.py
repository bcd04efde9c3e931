"""The SQL ingest runs: job header rows, aborted jobs, idempotency records, the lot re-read and the
purge. The rate limit and v2's admission are :mod:`gen_ingest.admission`.

Plain functions over a connection; callers open transactions where they need one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gen_common.db import Conn


async def insert_job(
    conn: Conn,
    *,
    job_id: uuid.UUID,
    client_id: str,
    api_version: int,
    mode: str,
    languages: list[str],
    total_lots: int,
    webhook_url: str | None,
) -> datetime:
    created: datetime = await conn.fetchval(
        """INSERT INTO jobs (job_id, client_id, api_version, mode, languages, total_lots,
                             webhook_url)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at""",
        job_id,
        client_id,
        api_version,
        mode,
        languages,
        total_lots,
        webhook_url,
    )
    return created


async def abort_job(conn: Conn, job_id: uuid.UUID, reason: str) -> None:
    """Forget a job whose lots could not all be published (call inside a transaction)."""
    await conn.execute(
        "INSERT INTO aborted_jobs (job_id, reason) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        job_id,
        reason[:500],
    )
    await conn.execute("DELETE FROM jobs WHERE job_id = $1", job_id)


async def lot_result(conn: Conn, job_id: uuid.UUID, lot_seq: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """SELECT status, descriptions, missing_images, pending_languages, warnings, error_code
           FROM lots WHERE job_id = $1 AND lot_seq = $2""",
        job_id,
        lot_seq,
    )
    return None if row is None else dict(row)


@dataclass(frozen=True, slots=True)
class Earlier:
    """The record of an earlier request with the same idempotency key."""

    request_hash: bytes
    status_code: int | None  # None: still running
    response: bytes | None


async def claim_key(
    conn: Conn, client_id: str, key: str, request_hash: bytes, ttl_s: float
) -> Earlier | None:
    """Claim ``key`` for this request (None), or return the live earlier record."""
    claimed = await conn.fetchval(
        """INSERT INTO idempotency_keys (client_id, key, request_hash, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))
           ON CONFLICT (client_id, key) DO UPDATE
           SET request_hash = EXCLUDED.request_hash, status_code = NULL, response = NULL,
               created_at = now(), expires_at = EXCLUDED.expires_at
           WHERE idempotency_keys.expires_at < now()
           RETURNING true""",
        client_id,
        key,
        request_hash,
        ttl_s,
    )
    if claimed:
        return None
    return await earlier(conn, client_id, key)


async def earlier(conn: Conn, client_id: str, key: str) -> Earlier | None:
    row = await conn.fetchrow(
        """SELECT request_hash, status_code, response FROM idempotency_keys
           WHERE client_id = $1 AND key = $2""",
        client_id,
        key,
    )
    if row is None:
        return None
    return Earlier(bytes(row["request_hash"]), row["status_code"], row["response"])


async def finish_key(conn: Conn, client_id: str, key: str, status: int, body: bytes) -> None:
    await conn.execute(
        """UPDATE idempotency_keys SET status_code = $3, response = $4
           WHERE client_id = $1 AND key = $2""",
        client_id,
        key,
        status,
        body,
    )


async def release_key(conn: Conn, client_id: str, key: str) -> None:
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE client_id = $1 AND key = $2", client_id, key
    )


async def purge(conn: Conn, *, nonce_age_s: float) -> None:
    """Drop expired idempotency records, old nonces and idle rate-limit buckets.

    A bucket whose theoretical arrival time has passed is full again: GCRA decides exactly as for
    a bucket without a row (both take ``now() + T``), so deleting it changes no answer. A bucket
    in use meanwhile has a later ``tat`` and is kept (the DELETE re-checks the updated row).
    """
    await conn.execute("DELETE FROM idempotency_keys WHERE expires_at < now()")
    await conn.execute(
        "DELETE FROM request_nonces WHERE seen_at < now() - make_interval(secs => $1)",
        nonce_age_s,
    )
    await conn.execute("DELETE FROM rate_limits WHERE tat < now()")
