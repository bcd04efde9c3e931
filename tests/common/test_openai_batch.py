"""The Batch engine end to end: real simulator subprocess (frozen clock), real PostgreSQL."""

from __future__ import annotations

import time

import asyncpg
import pytest
from gen_common import openai_batch
from openai import AsyncOpenAI
from openai_sim.process import RunningSim

from tests.common.openai_batch_support import (
    MODEL,
    TableSource,
    add_items,
    all_settled,
    batch_rows,
    client,
    count_rows,
    count_submitted,
    counts,
    drive,
    engine,
    options,
    remote_batches,
    sim,
    sim_proc,
    source,
    status_is,
    wait_for,
)

pytestmark = [pytest.mark.pg]
__all__ = ["client", "sim", "sim_proc", "source"]  # fixtures used by name


async def test_thousand_items_complete_exactly_once(
    pool: asyncpg.Pool, client: AsyncOpenAI, sim: RunningSim, source: TableSource
) -> None:
    async with pool.acquire() as conn:
        await add_items(conn, source.table, "job-1000", 1000)
    async with engine(pool, client, source, options()):
        await wait_for(
            lambda: status_is(pool, source.stage, "submitted"), what="the batch submitted"
        )
        rows = await batch_rows(pool, source.stage)
        assert len(rows) == 1
        assert rows[0]["line_count"] == 1000
        assert rows[0]["input_file_id"]
        assert rows[0]["batch_id"]
        assert rows[0]["job_id"] == "job-1000"
        sim.admin.clock(advance=5 + 1000 / 50 + 5 + 1)
        await wait_for(lambda: all_settled(pool, source.table), what="every item settled")
        await wait_for(lambda: status_is(pool, source.stage, "finished"), what="row finished")

    assert await counts(pool, source.table) == {"done": 1000}
    assert (
        await pool.fetchval(
            f"""SELECT count(*) FROM {source.table}
                WHERE completions = 1 AND settles = 1 AND releases = 0 AND result <> ''
                  AND input_tokens > 0 AND price_factor = 0.5"""
        )
        == 1000
    )
    row = (await batch_rows(pool, source.stage))[0]
    assert row["remote_status"] == "completed"
    assert row["counts"] == {"total": 1000, "completed": 1000, "failed": 0}
    assert row["usage"]["input_tokens"] > 0
    items = await pool.fetch(
        "SELECT status, custom_id FROM openai_batch_items WHERE batch_row = $1", row["id"]
    )
    assert {i["status"] for i in items} == {"completed"}
    assert all(i["custom_id"].startswith(f"{source.stage}-{row['id']}-") for i in items)
    remote = await remote_batches(client)
    assert [b.id for b in remote] == [row["batch_id"]]
    assert remote[0].metadata == {"stage": source.stage, "chunk": str(row["id"])}
    assert remote[0].endpoint == "/v1/responses"


async def test_failed_lines_image_errors_and_permanent_errors(
    pool: asyncpg.Pool, client: AsyncOpenAI, sim: RunningSim, source: TableSource
) -> None:
    def images(i: int) -> list[str]:
        good = f"https://img.example.com/lot{i}/1.jpg"
        return [good, f"https://img.example.com/broken/{i}.jpg"] if i % 10 == 0 else [good]

    async with pool.acquire() as conn:
        await add_items(conn, source.table, "job-img", 40, images=images)
        await add_items(conn, source.table, "job-bad", 5, max_output_tokens=5)
        await add_items(conn, source.table, "job-rej", 3, prompt="[[reject]] lot {i}")
        await add_items(conn, source.table, "job-unready", 2, prompt="[[unready]] lot {i}")
        await add_items(conn, source.table, "job-gone", 2, prompt="[[cancel]] lot {i}")
    source.pool = pool
    async with engine(pool, client, source, options()):
        await drive(pool, sim, source, advance=60)

    rows = await pool.fetch(f"SELECT * FROM {source.table} ORDER BY id")
    broken = [r for r in rows if r["job_id"] == "job-img" and r["missing"]]
    assert len(broken) == 4  # lots 0, 10, 20, 30: the image error line, then a batch without it
    for r in broken:
        assert r["status"] == "done"
        assert r["completions"] == 1
        assert all("/broken/" in u for u in r["missing"])
        assert all("/broken/" not in u for u in r["images"])
        assert r["last_error"] in ("invalid_value", "invalid_image_url")
    ok = [r for r in rows if r["job_id"] == "job-img" and not r["missing"]]
    assert len(ok) == 36
    assert all(r["status"] == "done" and r["settles"] == 1 for r in ok)
    bad = [r for r in rows if r["job_id"] == "job-bad"]
    # 400 invalid request lines are not retryable: failed once, handed to the stage
    assert {(r["status"], r["settles"], r["completions"]) for r in bad} == {("failed", 1, 0)}
    assert {r["last_error"] for r in bad} == {"integer_below_min_value"}
    rej = [r for r in rows if r["job_id"] == "job-rej"]
    # the stage refused the answer with a PermanentError: its savepoint rolled back, then fail()
    assert {(r["status"], r["completions"], r["last_error"]) for r in rej} == {
        ("failed", 0, "invalid_model_output")
    }
    unready = [r for r in rows if r["job_id"] == "job-unready"]
    # refused by the stage's prepare(): never sent, failed once through the stage
    assert {(r["status"], r["settles"], r["last_error"]) for r in unready} == {
        ("failed", 1, "not_ready")
    }
    gone = [r for r in rows if r["job_id"] == "job-gone"]
    # cancelled while prepare() ran: hold() no longer holds them, so they are never sent
    assert {(r["status"], r["settles"], r["releases"]) for r in gone} == {("cancelled", 0, 0)}
    sent = await pool.fetchval(
        """SELECT count(*) FROM openai_batch_items i JOIN openai_batches b ON b.id = i.batch_row
           WHERE b.stage = $1 AND i.work_id = ANY($2::bigint[])""",
        source.stage,
        [r["id"] for r in gone],
    )
    assert sent == 0
    jobs = {r["job_id"] for r in await batch_rows(pool, source.stage)}
    assert jobs == {"job-img", "job-bad", "job-rej"}  # one job per file


async def test_splitting_by_lines_bytes_and_jobs(
    pool: asyncpg.Pool, client: AsyncOpenAI, sim: RunningSim, source: TableSource
) -> None:
    long_prompt = "Lot {i}. " + "x" * 4000
    async with pool.acquire() as conn:
        await add_items(conn, source.table, "job-many", 100)
        await add_items(conn, source.table, "job-long", 12, prompt=long_prompt)
    opts = options(max_lines=40, max_bytes=20_000)
    async with engine(pool, client, source, opts):
        await wait_for(lambda: status_is(pool, source.stage, "submitted"), what="submitted")
        rows = await batch_rows(pool, source.stage)
        sim.admin.clock(advance=120)
        await wait_for(lambda: all_settled(pool, source.table), what="every item settled")

    by_job: dict[str, list[int]] = {}
    for r in rows:
        by_job.setdefault(r["job_id"], []).append(r["line_count"])
        assert r["input_bytes"] <= 20_000
        item_jobs = await pool.fetchval(
            f"""SELECT count(DISTINCT w.job_id) FROM openai_batch_items i
                JOIN {source.table} w ON w.id = i.work_id WHERE i.batch_row = $1""",
            r["id"],
        )
        assert item_jobs == 1
    assert sorted(by_job["job-many"]) == [20, 40, 40]  # by lines
    assert sorted(by_job["job-long"]) == [4, 4, 4]  # by bytes (~4.3 KB a line)
    remote = await remote_batches(client)
    assert len(remote) == 6
    for b in remote:
        meta = await client.files.retrieve(b.input_file_id)
        assert meta.bytes <= 20_000
        assert meta.purpose == "batch"
    assert await counts(pool, source.table) == {"done": 112}
    assert await pool.fetchval(f"SELECT max(completions) FROM {source.table}") == 1


async def test_token_budget_splits_and_never_exceeds_the_cap(
    pool: asyncpg.Pool, client: AsyncOpenAI, sim: RunningSim, source: TableSource
) -> None:
    cap = 6_000
    sim.admin.config({"batch": {"enqueued_token_limits": {MODEL: cap}}})
    async with pool.acquire() as conn:
        await add_items(conn, source.table, "job-tok", 40, images=lambda i: ["https://i.ex/a.jpg"])
    opts = options(enqueued_token_limits={MODEL: cap})
    async with engine(pool, client, source, opts):
        peak = await drive(pool, sim, source, advance=60, rounds=20)
    rows = await batch_rows(pool, source.stage)
    assert len(rows) >= 3, "the token cap must split the job"
    assert all(r["est_tokens"] <= cap for r in rows)
    assert 0 < peak <= cap
    assert {r["remote_status"] for r in rows} == {"completed"}  # never token_limit_exceeded
    assert await counts(pool, source.table) == {"done": 40}
    assert await pool.fetchval(f"SELECT max(completions) FROM {source.table}") == 1


async def test_token_limit_exceeded_requeues_with_backoff(
    pool: asyncpg.Pool, client: AsyncOpenAI, sim: RunningSim, source: TableSource
) -> None:
    sim.admin.config({"batch": {"enqueued_token_limits": {MODEL: 500}}})
    async with pool.acquire() as conn:
        await add_items(conn, source.table, "job-tl", 50)
    opts = options(token_limit_backoff_s=3.0)
    async with engine(pool, client, source, opts):
        await wait_for(lambda: status_is(pool, source.stage, "submitted"), what="submitted")
        sim.admin.clock(advance=10)  # validation: the org's enqueued-token cap is exceeded
        await wait_for(lambda: status_is(pool, source.stage, "finished"), what="failed applied")
        failed = (await batch_rows(pool, source.stage))[0]
        assert failed["remote_status"] == "failed"
        assert failed["error"].startswith("token_limit_exceeded")
        delays = await pool.fetch(
            f"""SELECT extract(epoch FROM next_attempt_at - $1::timestamptz) AS d, releases,
                       attempts, status
                FROM {source.table}""",
            failed["completed_at"],
        )
        assert {(r["releases"], r["attempts"], r["status"]) for r in delays} == {(1, 0, "queued")}
        assert all(2.5 <= float(r["d"]) <= 3.5 for r in delays)
        sim.admin.config({"batch": {"enqueued_token_limits": {MODEL: 10_000_000}}})
        await wait_for(lambda: count_rows(pool, source.stage, 2), what="a second batch")
        sim.admin.clock(advance=60)
        await wait_for(lambda: all_settled(pool, source.table), what="every item settled")
    assert await counts(pool, source.table) == {"done": 50}
    assert await pool.fetchval(f"SELECT max(completions) FROM {source.table}") == 1


async def test_expired_batch_uses_finished_lines_and_requeues_the_rest(
    pool: asyncpg.Pool, client: AsyncOpenAI, sim: RunningSim, source: TableSource
) -> None:
    # a 20 s window at 2 lines/s: 30 lines finish per batch, the rest expire
    sim.admin.config({"batch": {"completion_window_s": 20, "lines_per_sim_second": 2}})
    async with pool.acquire() as conn:
        await add_items(conn, source.table, "job-exp", 100)
    async with engine(pool, client, source, options()):
        await drive(pool, sim, source, advance=30)
    rows = await batch_rows(pool, source.stage)
    assert [r["remote_status"] for r in rows] == ["expired", "expired", "expired", "completed"]
    assert [r["line_count"] for r in rows] == [100, 70, 40, 10]
    first = await pool.fetch(
        "SELECT status, count(*) AS n FROM openai_batch_items WHERE batch_row = $1 GROUP BY 1",
        rows[0]["id"],
    )
    assert {r["status"]: r["n"] for r in first} == {"completed": 30, "released": 70}
    assert await counts(pool, source.table) == {"done": 100}
    assert await pool.fetchval(f"SELECT max(completions) FROM {source.table}") == 1
    # expired lines were not the item's fault: no attempt counted
    assert await pool.fetchval(f"SELECT max(attempts) FROM {source.table}") == 1


async def test_cancel_job_cancels_its_batches_only(
    pool: asyncpg.Pool, client: AsyncOpenAI, sim: RunningSim, source: TableSource
) -> None:
    async with pool.acquire() as conn:
        await add_items(conn, source.table, "job-x", 200)
        await add_items(conn, source.table, "job-y", 50)
    async with engine(pool, client, source, options()):
        await wait_for(lambda: count_submitted(pool, source.stage, 2), what="two batches")
        sim.admin.clock(advance=5 + 1)  # validated; ~50 lines of each done
        cancelled = await openai_batch.cancel_job(pool, client, "job-x")
        assert cancelled == 1
        # the stage's jobs.control handler cancels its own work rows
        await pool.execute(f"UPDATE {source.table} SET status = 'cancelled' WHERE job_id = 'job-x'")
        sim.admin.clock(advance=60)
        await wait_for(lambda: all_settled(pool, source.table), what="every item settled")
        await wait_for(lambda: status_is(pool, source.stage, "finished"), what="rows finished")
    rows = {r["job_id"]: r for r in await batch_rows(pool, source.stage)}
    assert rows["job-x"]["remote_status"] == "cancelled"
    assert rows["job-x"]["cancel_requested"]
    assert rows["job-y"]["remote_status"] == "completed"
    remote = await client.batches.retrieve(rows["job-x"]["batch_id"])
    assert remote.status == "cancelled"
    items = await pool.fetch(
        "SELECT status, count(*) AS n FROM openai_batch_items WHERE batch_row = $1 GROUP BY 1",
        rows["job-x"]["id"],
    )
    assert {r["status"]: r["n"] for r in items} == {"cancelled": 200}
    x = await pool.fetch(f"SELECT * FROM {source.table} WHERE job_id = 'job-x'")
    assert {(r["status"], r["completions"], r["settles"]) for r in x} == {("cancelled", 0, 0)}
    y = await pool.fetch(f"SELECT * FROM {source.table} WHERE job_id = 'job-y'")
    assert {(r["status"], r["completions"]) for r in y} == {("done", 1)}
    assert await openai_batch.cancel_job(pool, client, "job-x") == 0  # nothing left in flight


async def test_two_engines_share_the_work_without_doing_anything_twice(
    pool: asyncpg.Pool, client: AsyncOpenAI, sim: RunningSim, source: TableSource
) -> None:
    async with pool.acquire() as conn:
        for job in range(4):
            await add_items(conn, source.table, f"job-{job}", 75)
    opts = options(max_lines=25, claim_limit=40)
    async with engine(pool, client, source, opts), engine(pool, client, source, opts):
        await drive(pool, sim, source, advance=60)
    rows = await batch_rows(pool, source.stage)
    remote = await remote_batches(client)
    assert sorted(b.id for b in remote) == sorted(r["batch_id"] for r in rows)
    assert {r["status"] for r in rows} == {"finished"}
    assert sum(r["line_count"] for r in rows) == 300
    assert await counts(pool, source.table) == {"done": 300}
    assert await pool.fetchval(f"SELECT max(settles) FROM {source.table}") == 1
    assert await pool.fetchval(f"SELECT min(completions) FROM {source.table}") == 1


async def test_a_batch_stuck_past_its_window_is_cancelled_and_its_lines_resent(
    pool: asyncpg.Pool, client: AsyncOpenAI, sim: RunningSim, source: TableSource
) -> None:
    # the simulated clock runs 100,000 s behind: OpenAI's expires_at lies in our past (B19)
    sim.admin.clock(set_to=time.time() - 100_000)
    async with pool.acquire() as conn:
        await add_items(conn, source.table, "job-stuck", 20)
    async with engine(pool, client, source, options(stuck_grace_s=60)):
        await wait_for(
            lambda: _remote_is(pool, source.stage, "cancelling"), what="the stuck batch cancelled"
        )
        sim.admin.clock(set_to=time.time())
        await drive(pool, sim, source, advance=60)
    rows = await batch_rows(pool, source.stage)
    assert [r["remote_status"] for r in rows] == ["cancelled", "completed"]
    assert not rows[0]["cancel_requested"]  # our monitor's decision, not a job cancel
    assert await counts(pool, source.table) == {"done": 20}
    assert await pool.fetchval(f"SELECT max(attempts) FROM {source.table}") == 1


async def _remote_is(pool: asyncpg.Pool, stage: str, status: str) -> bool:
    return any(r["remote_status"] == status for r in await batch_rows(pool, stage))
