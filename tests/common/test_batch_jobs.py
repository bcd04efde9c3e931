"""gen_common.batch_jobs.JobsTable against real PostgreSQL: a job cancelled while the batch
engine prepared its claimed rows is never held (so never packed into a batch line)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from gen_common.batch_jobs import JobsTable

pytestmark = pytest.mark.pg


async def _job_with_work(pool: asyncpg.Pool, lots: int) -> uuid.UUID:
    job = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO jobs (job_id, client_id, mode, status, languages, total_lots)
               VALUES ($1, 'test', 'batch', 'processing', '{ru}', $2)""",
            job,
            lots,
        )
        for seq in range(lots):
            await conn.execute(
                """INSERT INTO lots (job_id, lot_seq, lot_id, status)
                   VALUES ($1, $2, $3, 'assessed')""",
                job,
                seq,
                f'"L{seq}"',
            )
            await conn.execute(
                """INSERT INTO translate_work (job_id, lot_seq, language, priority)
                   VALUES ($1, $2, 'ru', 1)""",
                job,
                seq,
            )
    return job


async def test_hold_cancels_rows_of_jobs_and_lots_cancelled_after_the_claim(
    migrated: str, pool: asyncpg.Pool
) -> None:
    kept = await _job_with_work(pool, 1)
    cancelled_job = await _job_with_work(pool, 2)
    cancelled_lot = await _job_with_work(pool, 2)
    jobs = [kept, cancelled_job, cancelled_lot]
    table = JobsTable("translate_work", "translate")
    where = f"job_id IN ('{kept}', '{cancelled_job}', '{cancelled_lot}')"
    async with pool.acquire() as conn:
        claimed = await table.claim(conn, owner=table.owner, lease_s=60, limit=10, where=where)
        assert len(claimed) == 5
        await conn.execute("UPDATE jobs SET status = 'cancelled' WHERE job_id = $1", cancelled_job)
        await conn.execute(
            "UPDATE lots SET status = 'cancelled' WHERE job_id = $1 AND lot_seq = 1", cancelled_lot
        )
        held = await table.hold(conn, [r["id"] for r in claimed], owner=table.owner, lease_s=3600)
        rows = await conn.fetch(
            """SELECT id, job_id, lot_seq, status, lease_until > now() + interval '30 min' AS long
               FROM translate_work WHERE job_id = ANY($1::uuid[])""",
            jobs,
        )
    by_key = {(r["job_id"], r["lot_seq"]): r for r in rows}
    expect_held = {by_key[(kept, 0)]["id"], by_key[(cancelled_lot, 0)]["id"]}
    assert held == expect_held
    for r in rows:
        if r["id"] in expect_held:
            assert (r["status"], r["long"]) == ("running", True)
        else:
            assert r["status"] == "cancelled"
