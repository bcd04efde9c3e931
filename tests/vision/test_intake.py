"""The vision consumer's intake: one LotSubmitted at a time and a batch in one statement write the
same rows (gen_vision.intake), on real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from gen_common import tracing
from gen_common.claimer import Claimer
from gen_common.events import LotSubmitted
from gen_common.kafka import Received
from gen_common.wakeup import Wakeup
from gen_vision import handler

from tests.harness.job_rows import job_rows

from .conftest import vision_options

pytestmark = pytest.mark.pg
OPTIONS = vision_options(batch_min_lots=2)
SKIP = {"job_id", "id", "created_at", "updated_at", "next_attempt_at", "traceparent"}


def _lots(job_id: uuid.UUID) -> list[LotSubmitted]:
    common: dict[str, Any] = {
        "job_id": job_id,
        "client_id": "c1",
        "api_version": 2,
        "mode": "batch",
        "total_lots": 3,
        "job_webhook_url": "https://hook.test/job",
    }
    first = LotSubmitted(
        **common,
        lot_seq=0,
        lot_id=17,
        images=["https://a.test/1.jpg", "https://a.test/2 x.jpg"],
        languages=["en", "ru", "de"],
        additional_info='quotes " and \\ and ünïcode, {"json": [1]}',
        webhook="https://hook.test/lot",
    )
    second = LotSubmitted(**common, lot_seq=1, lot_id="lot-1", images=[], languages=["en"])
    return [first, second, second]  # the second twice: a redelivery within the same batch


async def _rows(pool: asyncpg.Pool, job_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    order = {"jobs": "job_id", "lots": "lot_seq", "vision_work": "lot_seq"}
    return await job_rows(pool, job_id, order, SKIP)


async def _one_by_one(pool: asyncpg.Pool, events: list[LotSubmitted]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            tracing.bind(tracing.new())
            await handler.on_submitted(event, conn, options=OPTIONS)


async def _in_one_go(pool: asyncpg.Pool, events: list[LotSubmitted]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        received = [Received(e, tracing.new()) for e in events]
        await handler.on_submitted_many(received, conn, options=OPTIONS)


async def test_a_batch_writes_what_its_lots_one_by_one_write(pool: asyncpg.Pool) -> None:
    single, batched = uuid.uuid4(), uuid.uuid4()
    await _one_by_one(pool, _lots(single))
    await _in_one_go(pool, _lots(batched))
    one, many = await _rows(pool, single), await _rows(pool, batched)
    assert [len(one[t]) for t in ("jobs", "lots", "vision_work")] == [1, 2, 2]
    assert many == one
    assert [w["path"] for w in many["vision_work"]] == ["batch", "batch"]
    traces = await pool.fetch("SELECT traceparent FROM lots WHERE job_id = $1", batched)
    assert all(tracing.valid(r["traceparent"]) for r in traces)


async def test_a_redelivered_batch_writes_nothing_more(pool: asyncpg.Pool) -> None:
    job_id = uuid.uuid4()
    await _in_one_go(pool, _lots(job_id))
    first = await _rows(pool, job_id)
    await _in_one_go(pool, _lots(job_id))
    assert await _rows(pool, job_id) == first


async def test_lots_of_an_aborted_job_write_nothing_and_of_a_cancelled_one_no_work(
    pool: asyncpg.Pool,
) -> None:
    aborted, cancelled = uuid.uuid4(), uuid.uuid4()
    await pool.execute("INSERT INTO aborted_jobs (job_id, reason) VALUES ($1, 'test')", aborted)
    await _in_one_go(pool, _lots(cancelled)[:1])
    await pool.execute("UPDATE jobs SET status = 'cancelled' WHERE job_id = $1", cancelled)
    await _in_one_go(pool, [*_lots(aborted), *_lots(cancelled)[1:]])
    assert await _rows(pool, aborted) == {"jobs": [], "lots": [], "vision_work": []}
    work = (await _rows(pool, cancelled))["vision_work"]
    assert [(w["lot_seq"], w["status"]) for w in work] == [(0, "queued"), (1, "cancelled")]


async def test_sync_lots_go_to_waiting_workers_leased_by_the_intake_statement(
    pool: asyncpg.Pool,
) -> None:
    """With the process's claimer, a statement that is its own transaction leases the sync lots
    it writes to the workers waiting (no claim statement); other lots, and lots beyond the
    waiting workers, are queued for the claims."""
    job_id, other = uuid.uuid4(), uuid.uuid4()
    sync = [
        LotSubmitted(job_id=job_id, lot_seq=i, lot_id=i, mode="sync", images=[], languages=["en"])
        for i in range(3)
    ]
    batch = LotSubmitted(
        job_id=other, lot_seq=0, lot_id=0, mode="batch", images=[], languages=["en"]
    )
    claimer = Claimer(pool, "vision_work", _no_claim, owner="p", wakeup=Wakeup(), idle_poll_s=60)
    takers = [asyncio.create_task(claimer.take()) for _ in range(2)]
    await asyncio.sleep(0)  # both wait
    async with pool.acquire() as conn:
        received = [Received(e, tracing.new()) for e in [batch, *sync]]
        await handler.on_submitted_many(received, conn, options=OPTIONS, claimer=claimer)
    taken = await asyncio.wait_for(asyncio.gather(*takers), 5)
    assert sorted(r["lot_seq"] for r in taken) == [0, 1]
    rows = await pool.fetch(
        "SELECT lot_seq, status, lease_owner, attempts FROM vision_work WHERE job_id = $1"
        " ORDER BY lot_seq",
        job_id,
    )
    owner = taken[0]["lease_owner"]
    assert owner.startswith("p:")
    assert [tuple(r) for r in rows] == [
        (0, "running", owner, 1),
        (1, "running", owner, 1),
        (2, "queued", None, 0),  # no worker left for it
    ]
    queued = await pool.fetchval("SELECT status FROM vision_work WHERE job_id = $1", other)
    assert queued == "queued"


async def test_inside_a_transaction_the_intake_leases_nothing(pool: asyncpg.Pool) -> None:
    """Its rows would reach a worker before they are committed: the claims take them."""
    job_id = uuid.uuid4()
    lot = LotSubmitted(job_id=job_id, lot_seq=0, lot_id=0, mode="sync", images=[], languages=["en"])
    claimer = Claimer(pool, "vision_work", _no_claim, owner="p", wakeup=Wakeup(), idle_poll_s=60)
    taker = asyncio.create_task(claimer.take())
    await asyncio.sleep(0)
    async with pool.acquire() as conn, conn.transaction():
        received = [Received(lot, tracing.new())]
        await handler.on_submitted_many(received, conn, options=OPTIONS, claimer=claimer)
    status = await pool.fetchval("SELECT status FROM vision_work WHERE job_id = $1", job_id)
    assert status == "queued"
    assert not taker.done()
    taker.cancel()
    await asyncio.gather(taker, return_exceptions=True)


async def _no_claim(limit: int, owner: str) -> list[asyncpg.Record]:
    return []  # the claimer's loop is not running here: only the intake hands rows out
