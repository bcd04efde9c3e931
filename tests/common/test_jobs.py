"""Work-queue leases on real PostgreSQL: claim, owner checks, expiry, reaping."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from gen_common import jobs

pytestmark = pytest.mark.pg

TABLE = """CREATE TABLE IF NOT EXISTS test_work (
    id bigserial PRIMARY KEY, tag text NOT NULL,
    status text NOT NULL DEFAULT 'queued', priority smallint NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0, next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner text, lease_until timestamptz, last_error text)"""


@pytest.fixture
async def work(pool: asyncpg.Pool, unique: str) -> str:
    await pool.execute(TABLE)
    await pool.executemany(
        "INSERT INTO test_work (tag, priority) VALUES ($1, $2)",
        [(unique, p) for p in (1, 10, 5)],
    )
    return unique


async def test_claims_are_exclusive_and_highest_priority_first(
    pool: asyncpg.Pool, work: str
) -> None:
    where = f"tag = '{work}'"
    async with pool.acquire() as a, pool.acquire() as b:
        first, second = await asyncio.gather(
            jobs.claim(a, "test_work", owner="a", lease_s=30, limit=2, where=where),
            jobs.claim(b, "test_work", owner="b", lease_s=30, limit=2, where=where),
        )
    ids = [r["id"] for r in first + second]
    assert len(ids) == len(set(ids)) == 3
    everything = sorted(first + second, key=lambda r: -r["priority"])
    assert everything[0]["priority"] == 10


async def test_only_the_lease_owner_can_finish(pool: asyncpg.Pool, work: str) -> None:
    async with pool.acquire() as conn:
        [row] = await jobs.claim(conn, "test_work", owner="me", lease_s=30, where=f"tag = '{work}'")
        assert not await jobs.finish(conn, "test_work", job_id=row["id"], owner="intruder")
        assert await jobs.finish(conn, "test_work", job_id=row["id"], owner="me")
        assert not await jobs.finish(conn, "test_work", job_id=row["id"], owner="me")


async def test_expired_leases_are_reaped_and_the_old_owner_loses(
    pool: asyncpg.Pool, work: str
) -> None:
    where = f"tag = '{work}'"
    async with pool.acquire() as conn:
        [row] = await jobs.claim(conn, "test_work", owner="dead", lease_s=0.01, where=where)
        await asyncio.sleep(0.05)
        assert await jobs.reap(conn, "test_work") >= 1
        claimed = await jobs.claim(
            conn, "test_work", owner="alive", lease_s=30, limit=3, where=where
        )
        assert row["id"] in [r["id"] for r in claimed]
        assert not await jobs.finish(conn, "test_work", job_id=row["id"], owner="dead")
        again = next(r for r in claimed if r["id"] == row["id"])
        assert again["attempts"] == 2


async def test_retry_later_hides_the_row_until_due(pool: asyncpg.Pool, work: str) -> None:
    where = f"tag = '{work}'"
    async with pool.acquire() as conn:
        rows = await jobs.claim(conn, "test_work", owner="w", lease_s=30, limit=3, where=where)
        for r in rows:
            assert await jobs.retry_later(
                conn, "test_work", job_id=r["id"], owner="w", delay_s=3600, error="later"
            )
        assert await jobs.claim(conn, "test_work", owner="w", lease_s=30, where=where) == []
        assert await jobs.release(conn, "test_work", owner="w") == 0


def test_table_names_are_checked() -> None:
    with pytest.raises(ValueError, match="work table"):
        jobs.table_name("x; DROP TABLE jobs")
