"""The translate consumer's intake: one LotAssessed at a time and a batch in one statement write
the same rows (gen_translate.intake), on real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from gen_common import tracing
from gen_common.breaker import Breaker, BreakerSettings
from gen_common.claimer import Claimer
from gen_common.events import LotAssessed
from gen_common.kafka import Received
from gen_common.wakeup import Wakeup
from gen_translate import handler
from gen_translate.store import WORK

from tests.harness.job_rows import job_rows

from .conftest import assessed, create_job, emitted
from .test_handler import claim

pytestmark = pytest.mark.pg
DEPS = handler.Deps(sync_budget_s=45.0)
SKIP = {"job_id", "id", "created_at", "updated_at", "next_attempt_at", "translated_at"}
AT = datetime(2026, 11, 25, 6, 7, 8, 123456, tzinfo=UTC)


def _events(job_id: uuid.UUID) -> list[LotAssessed]:
    return [
        assessed(
            job_id, 0, languages=["EN", "ru", "de", "ru"], mode="sync", lot_id=7, occurred_at=AT
        ),
        assessed(job_id, 1, languages=["en"], occurred_at=AT),  # nothing to translate: done at once
        assessed(job_id, 2, languages=["ja"], missing_images=[], occurred_at=AT),
        assessed(job_id, 2, languages=["ja"], missing_images=[], occurred_at=AT),  # redelivered
    ]


async def _rows(pool: asyncpg.Pool, job_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    order = {"translate_lots": "lot_seq", "translate_work": "lot_seq, language", "lots": "lot_seq"}
    return await job_rows(pool, job_id, order, SKIP)


async def _one_by_one(pool: asyncpg.Pool, events: list[LotAssessed]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await handler.on_assessed(event, conn, DEPS)


async def _in_one_go(pool: asyncpg.Pool, events: list[LotAssessed]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        received = [Received(e, tracing.new()) for e in events]
        await handler.on_assessed_many(received, conn, DEPS)


async def test_a_batch_writes_what_its_lots_one_by_one_write(pool: asyncpg.Pool) -> None:
    single, batched = await create_job(pool, 3), await create_job(pool, 3)
    await _one_by_one(pool, _events(single))
    await _in_one_go(pool, _events(batched))
    one, many = await _rows(pool, single), await _rows(pool, batched)
    assert [len(one[t]) for t in ("translate_lots", "translate_work", "lots")] == [3, 3, 3]
    assert many == one
    sync_lot = many["translate_lots"][0]
    assert sync_lot["assessed_at"] == AT  # through the JSON document to the microsecond
    assert sync_lot["deadline_at"] == AT + timedelta(seconds=45)
    assert [e.lot_seq for e in await emitted(pool, batched)] == [1]  # en alone: done at once
    assert [e.lot_seq for e in await emitted(pool, single)] == [1]


async def test_a_redelivered_batch_writes_nothing_more(pool: asyncpg.Pool) -> None:
    job_id = await create_job(pool, 3)
    await _in_one_go(pool, _events(job_id))
    first = await _rows(pool, job_id)
    await _in_one_go(pool, _events(job_id))
    assert await _rows(pool, job_id) == first
    assert len(await emitted(pool, job_id)) == 1


async def test_lots_of_a_cancelled_job_are_dropped(pool: asyncpg.Pool) -> None:
    job_id = await create_job(pool, 3)
    await pool.execute("INSERT INTO translate_cancelled_jobs (job_id) VALUES ($1)", job_id)
    await _in_one_go(pool, _events(job_id))
    rows = await _rows(pool, job_id)
    assert (rows["translate_lots"], rows["translate_work"]) == ([], [])
    assert await emitted(pool, job_id) == []


async def _no_claim(limit: int, owner: str) -> list[list[asyncpg.Record]]:
    return []  # the claimer's loop is not running here: only the intake hands rows out


async def test_a_sync_lots_languages_go_to_a_waiting_worker_leased_as_a_claim_would(
    pool: asyncpg.Pool,
) -> None:
    """With the process's workers, a statement that is its own transaction leases a sync lot's
    languages to a waiting worker, shaped as store.CLAIM_WITH_SOURCE returns a claim; lots past
    the waiting workers, and other modes, are queued for the claims."""
    job_id = await create_job(pool, 3)
    claimer = Claimer(pool, WORK, _no_claim, owner="p", wakeup=Wakeup(), idle_poll_s=60)
    deps = handler.Deps(45.0, handler.Workers(claimer, Breaker(BreakerSettings()), lease_s=30))
    taker = asyncio.create_task(claimer.take())
    await asyncio.sleep(0)
    events = [
        assessed(job_id, 0, languages=["ru", "de"], mode="sync"),
        assessed(job_id, 1, languages=["ru"], mode="sync"),  # no worker left for it
        assessed(job_id, 2, languages=["ru"]),
    ]
    async with pool.acquire() as conn:
        await handler.on_assessed_many([Received(e, tracing.new()) for e in events], conn, deps)
    item = await asyncio.wait_for(taker, 5)
    assert sorted(r["language"] for r in item) == ["de", "ru"]
    assert {r["lot_seq"] for r in item} == {0}
    owner = item[0]["lease_owner"]
    rows = await pool.fetch(
        "SELECT lot_seq, language, status, lease_owner, attempts FROM translate_work"
        " WHERE job_id = $1 ORDER BY lot_seq, language",
        job_id,
    )
    assert [tuple(r) for r in rows] == [
        (0, "de", "running", owner, 1),
        (0, "ru", "running", owner, 1),
        (1, "ru", "queued", None, 0),
        (2, "ru", "queued", None, 0),
    ]
    await pool.execute(  # the same rows as a claim returns them
        "UPDATE translate_work SET status = 'queued' WHERE job_id = $1 AND lot_seq = 0", job_id
    )
    claimed = await claim(pool, job_id, owner, lot_seq=0)
    volatile = {"lease_until", "attempts"}
    by_language = {r["language"]: r for r in claimed}
    for leased in item:
        again = by_language[leased["language"]]
        # every field a claim returns, with the same values (the statement's own columns too)
        assert {k: leased[k] for k in again.keys() if k not in volatile} == {  # noqa: SIM118 - a Record iterates values
            k: v for k, v in again.items() if k not in volatile
        }
