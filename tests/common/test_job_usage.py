"""gen_common.job_usage: usage rows folded into jobs exactly once, never waiting on a job row."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

import asyncpg
import pytest
from gen_common import job_usage

pytestmark = pytest.mark.pg


APPEND = """INSERT INTO job_usage (job_id, input_tokens, cached_tokens, output_tokens,
                                   reasoning_tokens, cost_usd)"""


async def _job(pool: asyncpg.Pool) -> uuid.UUID:
    job_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO jobs (job_id, client_id, mode, languages, total_lots)
           VALUES ($1, 'usage-test', 'batch', '{en}', 1)""",
        job_id,
    )
    return job_id


async def _append(pool: asyncpg.Pool, job_id: uuid.UUID, n: int = 1) -> None:
    await pool.executemany(APPEND + " VALUES ($1, 10, 2, 5, 1, 0.001)", [(job_id,)] * n)


async def _totals(pool: asyncpg.Pool, job_id: uuid.UUID) -> tuple[int, int, int, int, Decimal]:
    row = await pool.fetchrow(
        """SELECT input_tokens, cached_tokens, output_tokens, reasoning_tokens, cost_usd
           FROM jobs WHERE job_id = $1""",
        job_id,
    )
    assert row is not None
    return tuple(row)


async def _pending(pool: asyncpg.Pool, job_id: uuid.UUID) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM job_usage WHERE job_id = $1", job_id)
    return n


async def test_fold_adds_every_row_once(pool: asyncpg.Pool) -> None:
    a, b = await _job(pool), await _job(pool)
    await _append(pool, a, 3)
    await _append(pool, b, 1)
    async with pool.acquire() as conn:
        assert await job_usage.fold(conn) >= 2
        await job_usage.fold(conn)  # nothing left: no second addition
    assert await _totals(pool, a) == (30, 6, 15, 3, Decimal("0.003"))
    assert await _totals(pool, b) == (10, 2, 5, 1, Decimal("0.001"))
    assert await _pending(pool, a) == await _pending(pool, b) == 0


async def test_fold_of_one_job_leaves_the_others(pool: asyncpg.Pool) -> None:
    a, b = await _job(pool), await _job(pool)
    await _append(pool, a)
    await _append(pool, b)
    async with pool.acquire() as conn:
        assert await job_usage.fold(conn, a) == 1
    assert (await _totals(pool, a))[0] == 10
    assert (await _totals(pool, b))[0] == 0
    assert await _pending(pool, b) == 1


async def test_a_held_job_row_is_skipped_not_waited_for(pool: asyncpg.Pool) -> None:
    held, free = await _job(pool), await _job(pool)
    await _append(pool, held)
    await _append(pool, free)
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM jobs WHERE job_id = $1 FOR UPDATE", held)
        # The holder's own transaction folds its job (as the notifier does when finalising).
        async with pool.acquire() as other:
            started = time.monotonic()
            await asyncio.wait_for(job_usage.fold(other), 5)
            assert time.monotonic() - started < 1.0
        assert (await _totals(pool, free))[0] == 10
        assert await _pending(pool, held) == 1  # left for a later pass
        assert await job_usage.fold(holder, held) == 1
    assert (await _totals(pool, held))[0] == 10
    assert await _pending(pool, held) == 0


async def test_concurrent_folds_never_double_count(pool: asyncpg.Pool) -> None:
    job_id = await _job(pool)
    for _ in range(5):
        await _append(pool, job_id, 40)

        async def one() -> None:
            async with pool.acquire() as conn:
                await job_usage.fold(conn)

        await asyncio.gather(*(one() for _ in range(6)))
    async with pool.acquire() as conn:
        await job_usage.fold(conn)
    assert await _totals(pool, job_id) == (2000, 400, 1000, 200, Decimal("0.200"))


async def test_keep_folding_runs_until_cancelled(pool: asyncpg.Pool) -> None:
    job_id = await _job(pool)
    task = asyncio.create_task(job_usage.keep_folding(pool, interval_s=0.05))
    try:
        await _append(pool, job_id, 2)
        deadline = time.monotonic() + 5
        while (await _totals(pool, job_id))[0] != 20:
            assert time.monotonic() < deadline, "periodic fold did not run"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
