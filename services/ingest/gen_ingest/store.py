"""The SQL ingest runs: job header rows, aborted jobs, idempotency records, the lot re-read.

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


async def acquire_rate(
    conn: Conn, bucket: str, *, rate_per_s: float, burst: int, client_id: str | None = None
) -> float:
    """GCRA: 0.0 when the request may pass, else the seconds until it would.

    One round trip. The client's own ``rate_per_s`` / ``rate_burst`` (api_clients) override the
    defaults given here. The state is one theoretical arrival time per bucket.
    """
    row = await conn.fetchrow(
        """WITH lim AS (
               SELECT make_interval(secs => 1.0 / coalesce(c.rate_per_s, $2)) AS t,
                      make_interval(secs => coalesce(c.rate_burst, $3)
                                            / coalesce(c.rate_per_s, $2)) AS tau
               FROM (SELECT 1) AS one LEFT JOIN api_clients c ON c.client_id = $4
           ), ins AS (
               INSERT INTO rate_limits AS r (bucket, tat, allowed)
               SELECT $1, now() + lim.t, true FROM lim
               ON CONFLICT (bucket) DO UPDATE SET
                   allowed = greatest(r.tat, now()) + (SELECT t FROM lim) - now()
                             <= (SELECT tau FROM lim),
                   tat = CASE WHEN greatest(r.tat, now()) + (SELECT t FROM lim) - now()
                                   <= (SELECT tau FROM lim)
                              THEN greatest(r.tat, now()) + (SELECT t FROM lim)
                              ELSE r.tat END
               RETURNING allowed, tat
           )
           SELECT ins.allowed, extract(epoch FROM ins.tat - now() + lim.t - lim.tau)::float8
                  AS wait_s
           FROM ins, lim""",
        bucket,
        rate_per_s,
        float(burst),
        client_id,
    )
    assert row is not None
    return 0.0 if row["allowed"] else max(float(row["wait_s"]), 0.001)


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of :func:`admit`: nonce, rate limit and (if asked) the job row, in that order."""

    fresh_nonce: bool
    wait_s: float  # 0.0: within the rate limit
    created_at: datetime | None  # the job row's, when one was inserted


@dataclass(frozen=True, slots=True)
class NewJob:
    job_id: uuid.UUID
    mode: str
    languages: list[str]
    total_lots: int
    webhook_url: str | None


async def admit(
    conn: Conn,
    *,
    client_id: str,
    nonce: str,
    bucket: str,
    rate_per_s: float,
    burst: int,
    api_version: int,
    job: NewJob | None,
) -> Admission:
    """One statement, one commit: remember the nonce, then (only for a fresh nonce) take a GCRA
    slot, then (only when the slot was granted and ``job`` is given) insert the jobs row.

    The same decisions as ``remember_nonce`` + :func:`acquire_rate` + :func:`insert_job` run one
    after the other, in one round trip instead of three (plus their three commits).
    """
    row = await conn.fetchrow(
        """WITH nonce AS (
               INSERT INTO request_nonces (client_id, nonce) VALUES ($1, $2)
               ON CONFLICT DO NOTHING RETURNING true AS fresh
           ), lim AS (
               SELECT make_interval(secs => 1.0 / coalesce(c.rate_per_s, $4)) AS t,
                      make_interval(secs => coalesce(c.rate_burst, $5)
                                            / coalesce(c.rate_per_s, $4)) AS tau
               FROM (SELECT 1) AS one LEFT JOIN api_clients c ON c.client_id = $1
           ), ins AS (
               INSERT INTO rate_limits AS r (bucket, tat, allowed)
               SELECT $3, now() + lim.t, true FROM lim WHERE EXISTS (SELECT FROM nonce)
               ON CONFLICT (bucket) DO UPDATE SET
                   allowed = greatest(r.tat, now()) + (SELECT t FROM lim) - now()
                             <= (SELECT tau FROM lim),
                   tat = CASE WHEN greatest(r.tat, now()) + (SELECT t FROM lim) - now()
                                   <= (SELECT tau FROM lim)
                              THEN greatest(r.tat, now()) + (SELECT t FROM lim)
                              ELSE r.tat END
               RETURNING allowed, tat
           ), job AS (
               INSERT INTO jobs (job_id, client_id, api_version, mode, languages, total_lots,
                                 webhook_url)
               SELECT $6, $1, $7, $8, $9, $10, $11 FROM ins
               WHERE ins.allowed AND $6::uuid IS NOT NULL
               RETURNING created_at
           )
           SELECT EXISTS (SELECT FROM nonce) AS fresh,
                  (SELECT CASE WHEN ins.allowed THEN 0.0
                               ELSE extract(epoch FROM ins.tat - now() + lim.t - lim.tau)::float8
                          END FROM ins, lim) AS wait_s,
                  (SELECT created_at FROM job) AS created_at""",
        client_id,
        nonce,
        bucket,
        rate_per_s,
        float(burst),
        None if job is None else job.job_id,
        api_version,
        None if job is None else job.mode,
        None if job is None else job.languages,
        None if job is None else job.total_lots,
        None if job is None else job.webhook_url,
    )
    assert row is not None
    wait = row["wait_s"]
    return Admission(
        fresh_nonce=bool(row["fresh"]),
        wait_s=0.0 if not wait else max(float(wait), 0.001),
        created_at=row["created_at"],
    )
