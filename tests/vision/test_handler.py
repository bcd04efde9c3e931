"""The consumer handlers on real PostgreSQL: rows from events, redelivery, cancel, priorities."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from gen_common.events import JobCancelRequested
from gen_vision import handler

from .conftest import vision_options
from .lots import lot, submit, work_rows

pytestmark = pytest.mark.pg


async def test_submitted_creates_job_lot_and_work_once(pool: asyncpg.Pool) -> None:
    job = uuid.uuid4()
    events = [lot(job, i, [f"https://h/{i}.jpg"], total=2, info="x") for i in range(2)]
    options = vision_options()
    await submit(pool, events, options)
    await submit(pool, events, options)  # redelivery is absorbed
    job_row = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job)
    assert job_row is not None
    assert job_row["status"] == "processing"
    assert job_row["total_lots"] == 2
    assert job_row["languages"] == ["en", "de"]
    assert await pool.fetchval("SELECT count(*) FROM lots WHERE job_id = $1", job) == 2
    rows = await work_rows(pool, job)
    assert [(r["lot_seq"], r["status"], r["priority"]) for r in rows] == [
        (0, "queued", 5),
        (1, "queued", 5),
    ]
    assert rows[1]["images"] == ["https://h/1.jpg"]
    assert rows[1]["lot_id"] == "lot-1"
    assert rows[1]["additional_info"] == "x"


async def test_existing_job_row_is_kept(pool: asyncpg.Pool) -> None:
    job = uuid.uuid4()
    await pool.execute(
        """INSERT INTO jobs (job_id, client_id, mode, languages, total_lots, status)
           VALUES ($1, 'ingest', 'batch', '{en}', 5, 'processing')""",
        job,
    )
    await submit(pool, [lot(job, 0, ["https://h/a.jpg"], mode="batch")], vision_options())
    row = await pool.fetchrow("SELECT client_id, total_lots FROM jobs WHERE job_id = $1", job)
    assert row is not None
    assert (row["client_id"], row["total_lots"]) == ("ingest", 5)


@pytest.mark.parametrize(("mode", "priority"), [("sync", 10), ("realtime", 5), ("batch", 1)])
async def test_priority_by_mode(pool: asyncpg.Pool, mode: str, priority: int) -> None:
    job = uuid.uuid4()
    await submit(pool, [lot(job, 0, ["https://h/a.jpg"], mode=mode)], vision_options())  # type: ignore[arg-type]
    [row] = await work_rows(pool, job)
    assert row["priority"] == priority
    assert row["path"] == "realtime"


async def test_large_batch_jobs_go_to_the_batch_path_when_enabled(pool: asyncpg.Pool) -> None:
    job = uuid.uuid4()
    options = vision_options(batch_min_lots=100)
    await submit(pool, [lot(job, 0, ["https://h/a.jpg"], mode="batch", total=101)], options)
    [row] = await work_rows(pool, job)
    assert row["path"] == "batch"


async def test_cancel_marks_queued_work_and_later_lots(pool: asyncpg.Pool) -> None:
    job = uuid.uuid4()
    options = vision_options()
    await submit(pool, [lot(job, i, ["https://h/a.jpg"], total=3) for i in range(2)], options)
    await pool.execute(
        "UPDATE vision_work SET status = 'done' WHERE job_id = $1 AND lot_seq = 0", job
    )
    async with pool.acquire() as conn, conn.transaction():
        await handler.on_cancel(JobCancelRequested(job_id=job), conn)
    await pool.execute("UPDATE jobs SET status = 'cancelled' WHERE job_id = $1", job)
    await submit(pool, [lot(job, 2, ["https://h/a.jpg"], total=3)], options)
    assert [r["status"] for r in await work_rows(pool, job)] == ["done", "cancelled", "cancelled"]


async def test_lots_of_a_job_ingest_aborted_are_dropped(pool: asyncpg.Pool) -> None:
    job = uuid.uuid4()
    await pool.execute(
        "INSERT INTO aborted_jobs (job_id, reason) VALUES ($1, 'publish failed')", job
    )
    await submit(pool, [lot(job, 0, ["https://h/a.jpg"])], vision_options())
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE job_id = $1", job) == 0
    assert await work_rows(pool, job) == []
